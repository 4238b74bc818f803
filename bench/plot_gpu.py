#!/usr/bin/env python3
"""Turns bench/gpu_compare.py's JSON into the README's GPU plot: time per chunked-forward shape and model, this
library beside flash-linear-attention and FlashQLA, with each implementation's fraction of the roofline on its bar.

    python3 bench/plot_gpu.py compare.json [more.json ...] bench/results/gpu_forward.png   # needs matplotlib

Several JSON files (runs of one device command split by --shapes) are merged; a (shape, model, implementation)
measured twice keeps its first value.
"""
import json
import sys


def load(paths):
    rows = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for result in data["results"]:
            run = result["run"]
            if run["kind"] != "chunked":
                continue
            shape = f"B={run['B']} T={run['T']} H={run['H']} K={run['K']}"
            for row in result["rows"]:
                if row.get("ms") is None:
                    continue
                impl = "ours" if row["impl"].startswith("ours") else row["impl"]
                rows.setdefault((shape, run["model"]), {}).setdefault(
                    impl, (row["ms"], row.get("fraction"), run.get("accuracy", False)))
    return rows


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load(argv[1:-1])
    keys = [k for k in rows if "ours" in rows[k]]
    impls = ["ours"] + sorted({i for k in keys for i in rows[k] if i != "ours"})
    colors = {impl: f"C{j}" for j, impl in enumerate(impls)}
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(keys)), 4.5))
    width = 0.35
    labelled = set()
    for i, key in enumerate(keys):
        present = [impl for impl in impls if impl in rows[key]]
        for j, impl in enumerate(present):
            ms, fraction, _ = rows[key][impl]
            x = i + (j - (len(present) - 1) / 2) * width
            bar = ax.bar(x, ms, width, color=colors[impl], label=None if impl in labelled else impl)
            labelled.add(impl)
            if fraction:
                ax.annotate(f"{fraction:.2f}", (x, ms), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{shape}\n{model}" for shape, model in keys], fontsize=6, rotation=45, ha="right")
    ax.set_ylabel("forward time (ms, lower is better)")
    ax.set_title("Chunked forward on an H200, bf16 inputs (numbers on bars: fraction of the roofline)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(argv[-1], dpi=150)
    print(f"wrote {argv[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
