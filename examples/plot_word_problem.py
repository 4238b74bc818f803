#!/usr/bin/env python3
"""Accuracy against position for several train_word_problem runs in one PNG (the README's training plot).

    python3 examples/plot_word_problem.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--train-length 64]

Each RUN_DIR holds the accuracy_by_position.csv that train_word_problem wrote. Needs matplotlib.
"""
import csv
import sys


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    train_length = None
    if "--train-length" in argv:
        train_length = int(argv[argv.index("--train-length") + 1])
        args = [a for a in args if a != str(train_length)]
    if len(args) < 2:
        print(__doc__)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for spec in args[1:]:
        label, directory = spec.rsplit("=", 1)  # labels may hold "=", paths do not
        with open(f"{directory}/accuracy_by_position.csv") as f:
            rows = list(csv.DictReader(f))
        ax.plot([int(r["position"]) for r in rows], [float(r["accuracy"]) for r in rows], label=label, linewidth=1)
    if train_length:
        ax.axvline(train_length, color="gray", linestyle="--", linewidth=0.8)
        ax.text(train_length, 0.02, " train length", color="gray", fontsize=7)
    ax.set_xlabel("position in the word")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(args[0], dpi=150)
    print(f"wrote {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
