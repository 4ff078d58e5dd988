#!/usr/bin/env bash
# TIGER, paper-size T5 (properties/generative.yaml), on amazon2018-scientific, to early stopping, with
# `recency_embedding: True` (not in the paper: each encoder token also gets a learned embedding of its item's place
# counted from the most recent one). Everything else is docs/results/tiger-scientific-paper-es/'s run (the default
# recipe with a 45-epoch cosine decay to zero, stopping_delta 0, patience 10), so the two differ in that key only.
# Run from the repository root; about 1 h 45 min on 2 cores.
set -euo pipefail
OUT=docs/results/tiger-scientific-paper-recency
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --recency_embedding=True \
    --checkpoint_tag=paper-recency --result_file=$OUT/result.json \
    --valid_rank_file=$OUT/ranks-valid.csv --rank_file=$OUT/ranks-test.csv 2>&1 | tee $OUT/run.log
