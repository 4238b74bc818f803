#!/usr/bin/env bash
# The README's training tables: S3 with a preset (PRESET=small, the default: k 64 -> 256, about 5 minutes on 2 CPU
# cores; PRESET=medium: k 128 -> 512, about 25 minutes), for n_h = 2 with eigenvalues in [-1, 1], n_h = 1 with
# [-1, 1], and n_h = 2 with [0, 1], three seeds each. Run from the repository root after
# `cmake --workflow --preset release`; extra arguments go to every run (e.g. --threads 2).
#   [PRESET=medium] examples/word_problem_table.sh [trainer options...]
set -euo pipefail
trainer=${TRAINER:-./build/release/examples/train_word_problem}
preset=${PRESET:-small}
out=${OUT:-runs/word_problem_table_$preset}
extra=("$@")
mkdir -p "$out"
printf '%-6s %-4s %-8s %-5s %-10s %-9s %-15s %-16s %s\n' group n_h range seed train_acc test_acc "acc <= k" "acc > k" seconds
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
for config in "2 1" "1 1" "2 0"; do
  read -r steps negative <<<"$config"
  for seed in 666 667 668; do
    dir="$out/nh${steps}_neg${negative}_seed$seed"
    line=$("$trainer" --preset "$preset" --num_householder "$steps" --allow_neg_eigval "$negative" --seed "$seed" \
             --out "$dir" "${extra[@]}" 2>/dev/null | grep '^result')
    printf '%-6s %-4s %-8s %-5s %-10s %-9s %-15s %-16s %s\n' "$(get group)" "$steps" "$(get eigenvalues)" "$seed" \
      "$(get train_acc)" "$(get test_acc)" "$(get test_acc_upto_k)" "$(get test_acc_beyond_k)" "$(get seconds)"
  done
done
