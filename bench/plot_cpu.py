#!/usr/bin/env python3
"""Turns bench_cpu's Google Benchmark JSON into the README's plot and a summary table.

    ./build/release/bench/bench_cpu --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true \
        --benchmark_format=json --benchmark_out=bench_cpu.json
    python3 bench/plot_cpu.py bench_cpu.json bench/results/cpu_benchmark.png      # needs matplotlib

With repetitions, each result is the median of its repetitions (Google Benchmark's median aggregate); without, the
single run. Random interleaving spreads the repetitions of all benchmarks over the run, so ratios taken between
results of the same run see the same machine noise on both sides.
"""
import json
import re
import sys
from collections import defaultdict

NAME = re.compile(r"delta_product<(\w+), (\d), (\w+), (\w+)(?:, dp::Gating::(\w+))?>/(\d+)/(\d+)/(\d+)")
SIDE = re.compile(r"side_by_side<(\w+), (\d)(?:, dp::Gating::(\w+))?(?:, (?:true|false))?>/(\d+)/(\d+)/(\d+)")


def load(path):
    """Returns the run's context, the FMA peaks, the results of delta_product and those of side_by_side."""
    with open(path) as f:
        data = json.load(f)
    runs, medians, peaks, side = {}, {}, {}, {}
    for b in data["benchmarks"]:
        name = b.get("run_name", b["name"])
        if name.startswith("fma_peak<"):
            scalar = name[len("fma_peak<"):name.index(">")]
            # The peak is a best-of measurement: the highest of its repetitions.
            if b.get("run_type") != "aggregate":
                peaks[scalar] = max(peaks.get(scalar, 0.0), b["FLOP_per_s"])
            continue
        m = SIDE.match(name)
        if m:
            scalar, n_h, gate, T, K, H = m.groups()
            key = (scalar, int(n_h), gate or "none", int(T), int(K), int(H))
            # The median aggregate (each counter's median over the repetitions) where there are repetitions.
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    side[key] = dict(b, repetitions_median=True)
            elif not side.get(key, {}).get("repetitions_median"):
                side[key] = b
            continue
        m = NAME.match(name)
        if not m:
            continue
        scalar, n_h, algo, direction, gate, T, K, H = m.groups()
        key = (scalar, int(n_h), algo, direction, gate or "none", int(T), int(K), int(H))
        ms = b["real_time"] * {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        entry = {"ms": ms, "FLOP_per_s": b.get("FLOP_per_s")}
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = entry
        else:
            runs.setdefault(key, []).append(entry)
    results = {key: medians.get(key, entries[0]) for key, entries in runs.items()}
    # Fractions of the peak measured in the same run (fma_peak), the same denominator for every result.
    for key, entry in results.items():
        peak = peaks.get(key[0])
        entry["fraction_of_peak"] = entry["FLOP_per_s"] / peak if peak and entry["FLOP_per_s"] else None
    return data.get("context", {}), peaks, results, side


def summary(peaks, results, side):
    lines = []
    for scalar, peak in sorted(peaks.items()):
        lines.append(f"measured FMA peak ({scalar}): {peak / 1e9:.0f} GFLOP/s")
    for key, b in sorted(side.items()):
        scalar, n_h, gate, T, K, H = key
        line = (f"side by side, {scalar}, {'gated ' if gate != 'none' else ''}n_h={n_h} B1 H{H} T{T} K=V={K} "
                f"(peak {b['peak_FLOP_per_s'] / 1e9:.0f} GFLOP/s): ")
        if "sequential_ms" in b:
            line += (f"sequential fwd {b['sequential_ms']:.1f} ms ({100 * b['sequential_fraction_of_peak']:.0f}% "
                     f"of peak), chunked {b['chunked_speedup']:.2f}x faster; ")
        line += (f"chunked fwd {b['chunked_ms']:.1f} ms ({100 * b['chunked_fraction_of_peak']:.0f}% of peak), "
                 f"fwd+bwd {b['chunked_fwd_bwd_ms']:.1f} ms ({b['fwd_bwd_over_fwd']:.2f}x fwd)")
        lines.append(line)
    def get(*key):
        return results.get(key)
    for scalar in ("float", "double"):
        for gate in ("none", "scalar_decay"):
            seq = get(scalar, 1, "seq", "fwd", gate, 4096, 128, 8)
            ch = get(scalar, 1, "chunk", "fwd", gate, 4096, 128, 8)
            fb = get(scalar, 1, "chunk", "fwd_bwd", gate, 4096, 128, 8)
            if not ch:
                continue
            label = f"{scalar}, {'gated ' if gate != 'none' else ''}DeltaNet, B1 H8 T4096 K=V=128"
            parts = [f"chunked fwd {ch['ms']:.2f} ms ({100 * ch['fraction_of_peak']:.0f}% of peak)"]
            if seq:
                parts.append(f"sequential fwd {seq['ms']:.2f} ms ({100 * seq['fraction_of_peak']:.0f}% of peak), "
                             f"chunked {seq['ms'] / ch['ms']:.2f}x faster")
            if fb:
                parts.append(f"fwd+bwd {fb['ms']:.2f} ms = {fb['ms'] / ch['ms']:.2f}x fwd")
            sb = get(scalar, 1, "seq", "fwd_bwd", gate, 4096, 128, 8)
            if sb and seq:
                parts.append(f"sequential fwd+bwd {sb['ms']:.2f} ms = {sb['ms'] / seq['ms']:.2f}x its fwd")
            lines.append(label + ": " + "; ".join(parts))
    # Forward + backward over forward alone, wherever both were measured.
    lines.append("chunked fwd+bwd / fwd (scalar, n_h, T, K):")
    for key in sorted(results):
        scalar, n_h, algo, direction, gate, T, K, H = key
        if algo != "chunk" or direction != "fwd_bwd":
            continue
        forward = results.get((scalar, n_h, algo, "fwd", gate, T, K, H))
        if forward:
            lines.append(f"  {scalar:6s} {gate:12s} n_h={n_h} T={T:5d} K={K:3d}: "
                         f"{results[key]['ms'] / forward['ms']:.2f}x ({forward['ms']:.2f} -> {results[key]['ms']:.2f} ms)")
    return "\n".join(lines)


def plot(peaks, results, side, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    series = [("seq", "fwd", "sequential forward", "tab:gray"), ("chunk", "fwd", "chunked forward", "tab:blue"),
              ("chunk", "fwd_bwd", "chunked forward + backward", "tab:orange")]

    ax = axes[0]
    for algo, direction, label, color in series:
        pts = sorted((k[5], v["ms"]) for k, v in results.items()
                     if k[0] == "float" and k[1] == 1 and k[2] == algo and k[3] == direction and k[4] == "none"
                     and k[6] == 128 and k[7] == 8)
        if pts:
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=label, color=color, base=2)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("time (ms)")
    ax.set_title("DeltaNet, float, B=1 H=8 K=V=128")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    for algo, label, color in (("seq", "sequential", "tab:gray"), ("chunk", "chunked", "tab:blue")):
        pts = sorted((k[6], v["fraction_of_peak"]) for k, v in results.items()
                     if k[0] == "float" and k[1] == 1 and k[2] == algo and k[3] == "fwd" and k[4] == "none"
                     and k[5] == 4096 and v["fraction_of_peak"] is not None)
        if pts:
            ax.semilogx([p[0] for p in pts], [100 * p[1] for p in pts], "o-", label=label, color=color, base=2)
    peak = peaks.get("float")
    ax.set_xlabel("head size K = V")
    ax.set_ylabel("% of measured FMA peak" + (f" ({peak / 1e9:.0f} GFLOP/s)" if peak else ""))
    ax.set_title("forward, float, T=4096 H=8")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    width = 0.27
    for i, (algo, direction, label, color) in enumerate(series):
        pts = sorted((k[1], v["ms"]) for k, v in results.items()
                     if k[0] == "float" and k[2] == algo and k[3] == direction and k[4] == "none"
                     and k[5] == 1024 and k[6] == 128 and k[7] == 8)
        if pts:
            ax.bar([p[0] + (i - 1) * width for p in pts], [p[1] for p in pts], width, label=label, color=color)
    ax.set_xlabel("Householder steps per token n_h")
    ax.set_ylabel("time (ms)")
    ax.set_title("DeltaProduct, float, T=1024 H=8 K=V=128")
    ax.set_xticks([1, 2, 3, 4])
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[3]
    pts = sorted((k[3], v["fwd_bwd_over_fwd"]) for k, v in side.items()
                 if k[0] == "float" and k[1] == 1 and k[2] == "none" and k[4] == 128 and k[5] == 8)
    if pts:
        ax.semilogx([p[0] for p in pts], [p[1] for p in pts], "o-", label="float, side by side", color="tab:red",
                    base=2)
    for scalar, color in (("float", "tab:orange"), ("double", "tab:purple")):
        pts = []
        for k, v in results.items():
            if k[0] == scalar and k[1] == 1 and k[2] == "chunk" and k[3] == "fwd_bwd" and k[4] == "none" \
                    and k[6] == 128 and k[7] == 8:
                forward = results.get((scalar, 1, "chunk", "fwd", "none", k[5], 128, 8))
                if forward:
                    pts.append((k[5], v["ms"] / forward["ms"]))
        pts.sort()
        if pts:
            ax.semilogx([p[0] for p in pts], [p[1] for p in pts], "o--", label=f"{scalar}, separate runs",
                        color=color, base=2, alpha=0.6)
    ax.axhline(3.5, color="gray", linestyle="--", label="target 3.5x")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("(forward + backward) / forward")
    ax.set_title("chunked, B=1 H=8 K=V=128")
    ax.set_ylim(0, 6)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: plot_cpu.py bench_cpu.json [out.png]")
    context, peaks, results, side = load(sys.argv[1])
    print(f"{context.get('host_name', '?')}: {context.get('num_cpus', '?')} CPUs, {context.get('date', '')}")
    print(summary(peaks, results, side))
    if len(sys.argv) == 3:
        plot(peaks, results, side, sys.argv[2])
        print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
