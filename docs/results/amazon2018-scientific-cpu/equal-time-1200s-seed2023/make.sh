#!/bin/bash
# The 1,200 s, seed 2023 row of ../equal-time-summary/: the learned STREAM-Rec job of ../grpo-validation-1200s/run.sh
# and the TIGER job of ../grpo-validation-1200s/stage1/run.sh (same settings, seed and semantic IDs, one after the
# other on one machine), gathered into one bench/equal_budget.sh-shaped folder, then compared user by user with
# bench/equal_budget_paired.sh (no re-evaluation: the SFT model's test ranks are ../grpo-validation-1200s's).
# Trains nothing; run both run.sh scripts first. From the repository root.
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time-1200s-seed2023
G=docs/results/amazon2018-scientific-cpu/grpo-validation-1200s
cp $G/learned.json $G/learned.log $G/ranks-learned.csv $O/
cp $G/test-ranks-sft.csv $O/ranks-learned-sft.csv
cp $G/stage1/tiger-1200s/tiger.json $G/stage1/tiger-1200s/tiger.log $G/stage1/tiger-1200s/ranks-tiger.csv $O/
DATASET=amazon2018-scientific bash bench/equal_budget_paired.sh $O ${DATA_PATH:-../shared/data} > $O/paired.log
