#!/usr/bin/env bash
# TIGER, paper-size T5 (properties/generative.yaml), on amazon2018-scientific, to early stopping, with
# `recency_embedding: True` (not in the paper: each encoder token also gets a learned embedding of its item's place
# counted from the most recent one) and the learning rate given (default 5e-4). Everything else is
# docs/results/tiger-scientific-paper-es/'s run at 1e-3 (the default recipe with a 45-epoch cosine decay to zero,
# stopping_delta 0, patience 10). Run from the repository root; about 1 h 45 min on 2 cores.
#   bash docs/results/tiger-scientific-paper-recency/run.sh [LEARNING_RATE]
set -euo pipefail
LR=${1:-5e-4}
OUT=docs/results/tiger-scientific-paper-recency
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --learning_rate="$LR" --recency_embedding=True \
    --checkpoint_tag="paper-recency-lr$LR" --result_file=$OUT/result-lr$LR.json \
    --valid_rank_file=$OUT/ranks-valid-lr$LR.csv --rank_file=$OUT/ranks-test-lr$LR.csv 2>&1 | tee $OUT/run-lr$LR.log
