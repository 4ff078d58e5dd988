#!/bin/bash
# The test top-10 lists of the learned job's SFT and GRPO models (checkpoints in saved/ from ../run.sh), then what
# takes rank 1: ../../../grpo-validation-1200s/top-items/run.sh on this folder. Run from the repository root.
set -euo pipefail
RUN_DIR=docs/results/amazon2018-scientific-cpu/equal-time-1200s-seed2023/shared-stage1 \
    bash docs/results/amazon2018-scientific-cpu/grpo-validation-1200s/top-items/run.sh
