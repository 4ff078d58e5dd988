#!/usr/bin/env bash
# TIGER with the CPU preset (properties/cpu.yaml) on amazon2018-scientific, to early stopping, with
# `recency_embedding: True` (not in the paper: each encoder token also gets a learned embedding of its item's place
# counted from the most recent one). Everything else is docs/results/tiger-scientific-cpu-lr/'s run at 5e-4 (the
# learning rate validation picked there), so the two differ in that key only. Run from the repository root;
# about 1 h on 2 cores.
#   bash docs/results/tiger-scientific-cpu-recency/run.sh [LEARNING_RATE]
set -euo pipefail
LR=${1:-5e-4}
OUT=docs/results/tiger-scientific-cpu-recency
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --config_files=properties/cpu.yaml --learning_rate="$LR" --recency_embedding=True \
    --checkpoint_tag="cpu-recency-lr$LR" --result_file=$OUT/result-lr$LR.json \
    --valid_rank_file=$OUT/ranks-valid-lr$LR.csv --rank_file=$OUT/ranks-test-lr$LR.csv 2>&1 | tee $OUT/run-lr$LR.log
