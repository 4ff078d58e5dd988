#!/bin/bash
# The full 1,200 s, seed 2023 row: learned, constant, no-trace and pure-RL STREAM-Rec jobs, all from the one stage 1 of
# ../../grpo-validation-1200s/stage1/run.sh (720 s of PT, saved/STREAMRec-amazon2018-scientific-stage1-*.pth; run
# that first, on this machine), each then given SFT 360 s and GRPO 120 s (pure RL: GRPO 480 s) as bench/equal_budget.sh
# does; one job at a time, 2 threads. TIGER is that script's 1,200 s TIGER job (same settings, seed and IDs). Then
# the paired comparisons. From the repository root.
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time-1200s-seed2023/shared-stage1
S=docs/results/amazon2018-scientific-cpu/grpo-validation-1200s/stage1
D=${DATA_PATH:-../shared/data}
settings=(DATASET=amazon2018-scientific CONFIG_FILES=properties/cpu.yaml BATCH=256 LR=0.003 EVAL_BATCH=512 BUDGET=1200
          RANKS=1 FROM_PT=stage1 EXTRA="--seed=${SEED:-2023}")
for job in learned constant none pure_rl; do
  env "${settings[@]}" JOBS=$job bash bench/equal_budget.sh $O $D > $O/$job.console.txt 2>&1
done
cp $S/tiger-1200s/tiger.json $S/tiger-1200s/tiger.log $S/tiger-1200s/ranks-tiger.csv $O/
env "${settings[@]}" bash bench/equal_budget_paired.sh $O $D > $O/paired.log 2>&1
