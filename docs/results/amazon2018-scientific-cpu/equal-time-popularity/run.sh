#!/bin/bash
# Test NDCG@10 by the target's training popularity for the committed rank files of the equal-time folders:
# TIGER, the learned-trace SFT model, GRPO from it, and (seed 2022) GRPO without the thinking-likelihood reward.
# Reads rank files only; run from the repository root.
set -euo pipefail
R=docs/results/amazon2018-scientific-cpu
OUT=$R/equal-time-popularity
INTER=${DATA_PATH:-../shared/data}/amazon2018-scientific/amazon2018-scientific.inter
for run in equal-time-2400s equal-time-2400s-seed2021 equal-time-2400s-seed2022 equal-time-3600s; do
  F=$R/$run
  extra=()
  if [ "$run" = equal-time-2400s-seed2022 ]; then
    extra=("GRPO-paper-720s=$F/grpo-rewards-720s/ranks-paper.csv"
           "GRPO-no-thinking-likelihood-720s=$F/grpo-rewards-720s/ranks-no-thinking-likelihood.csv")
  fi
  python bench/split_breakdown.py --inter "$INTER" TIGER=$F/ranks-tiger.csv SFT=$F/ranks-learned-sft.csv \
      GRPO=$F/ranks-learned.csv "${extra[@]}" --out $OUT/$run.md --json $OUT/$run.json > /dev/null
done
