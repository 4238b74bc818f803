#!/usr/bin/env python3
"""Turns bench/gpu_compare.py's JSON into the README's GPU plot: one panel for the chunked forward and one for the
training step (forward + backward), time per shape and model, this library beside flash-linear-attention and
FlashQLA, with each implementation's fraction of the roofline on its bar. An implementation that refused a shape
(FLA's gated backward on Hopper) is marked "refused" where its bar would be.

    python3 bench/plot_gpu.py compare.json [more.json ...] bench/results/gpu_compare.png   # needs matplotlib

Several JSON files (runs of one device command split by --shapes or --only) are merged; a (kind, shape, model,
implementation) measured twice keeps its first value, so list the newest file first.
"""
import json
import sys

PANELS = (("chunked", "chunked forward"), ("training", "training step: forward + backward, every gradient"))


def load(paths):
    """({kind: {(shape, model): {impl: (ms or None, fraction)}}}, {kind: devices}) for the chunked and training runs."""
    panels = {kind: {} for kind, _ in PANELS}
    devices = {kind: [] for kind, _ in PANELS}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for result in data["results"]:
            run = result["run"]
            if run["kind"] not in panels:
                continue
            device = data.get("device", "unknown GPU").replace("NVIDIA ", "")
            if device not in devices[run["kind"]]:
                devices[run["kind"]].append(device)
            shape = f"B={run['B']} T={run['T']} H={run['H']} K={run['K']}"
            for row in result["rows"]:
                if row.get("ms") is None and not row.get("refused"):
                    continue  # failed or not installed: nothing to draw
                impl = "ours" if row["impl"].startswith("ours") else row["impl"]
                panels[run["kind"]].setdefault((shape, run["model"]), {}).setdefault(
                    impl, (row.get("ms"), row.get("fraction")))
    return panels, devices


def draw(ax, rows, title, colors):
    keys = [k for k in rows if rows[k].get("ours", (None,))[0] is not None]
    impls = ["ours"] + sorted({i for k in keys for i in rows[k] if i != "ours"})
    width = 0.8 / max(1, max(len(rows[k]) for k in keys))
    tallest = max(ms for k in keys for ms, _ in rows[k].values() if ms is not None)
    labelled = set()
    for i, key in enumerate(keys):
        present = [impl for impl in impls if impl in rows[key]]
        for j, impl in enumerate(present):
            ms, fraction = rows[key][impl]
            x = i + (j - (len(present) - 1) / 2) * width
            color = colors.setdefault(impl, f"C{len(colors)}")
            if ms is None:
                ax.annotate(f"{impl}: refused", (x, 0.01 * tallest), ha="center", va="bottom", rotation=90, fontsize=6,
                            color=color)
                continue
            ax.bar(x, ms, width, color=color, label=None if impl in labelled else impl)
            labelled.add(impl)
            if fraction:
                ax.annotate(f"{fraction:.2f}", (x, ms), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{shape}\n{model}" for shape, model in keys], fontsize=6, rotation=45, ha="right")
    ax.set_ylabel("ms, lower is better")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels, devices = load(argv[1:-1])
    shown = [(kind, title) for kind, title in PANELS
             if any(r.get("ours", (None,))[0] is not None for r in panels[kind].values())]
    if not shown:
        print("no chunked or training runs with a time of ours in the JSON")
        return 1
    widest = max(len(panels[kind]) for kind, _ in shown)
    fig, axes = plt.subplots(len(shown), 1, figsize=(max(8, 0.9 * widest), 4.5 * len(shown)), squeeze=False)
    colors = {"ours": "C0"}
    for ax, (kind, title) in zip(axes[:, 0], shown):
        on = " and ".join(devices[kind])  # timings are compared within one device command, never across devices
        draw(ax, panels[kind], f"{title} on {on}, bf16 inputs (numbers on bars: fraction of the H200 roofline)", colors)
    fig.tight_layout()
    fig.savefig(argv[-1], dpi=150)
    print(f"wrote {argv[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
