#!/usr/bin/env bash
# TIGER, paper-size T5 (properties/generative.yaml), on amazon2018-scientific, to early stopping, with dropout 0.2
# (generative.yaml: 0.1; tuned TIGER implementations use 0.1-0.2) and otherwise exactly the run of
# docs/results/tiger-scientific-paper-es/ (45-epoch cosine decay to zero, stopping_delta 0, patience 10).
# Run from the repository root; about 1 h 40 min on 2 cores.
set -euo pipefail
OUT=docs/results/tiger-scientific-paper-dropout
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --dropout_rate=0.2 --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --checkpoint_tag=paper-dropout0.2 \
    --result_file=$OUT/result.json --rank_file=$OUT/ranks-test.csv 2>&1 | tee $OUT/run.log
