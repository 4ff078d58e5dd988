#!/usr/bin/env bash
# TIGER, paper-size T5 (properties/generative.yaml), on amazon2018-scientific, to early stopping inside one session:
# the default recipe with a 45-epoch cosine decay to zero, and stopping_delta 0 so that a tie at the decayed
# learning rate does not reset the patience (10). Run from the repository root; about 1 h 40 min on 2 cores (1 h 36 min of it training and validation).
set -euo pipefail
OUT=docs/results/tiger-scientific-paper-es
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --checkpoint_tag=paper-es \
    --result_file=$OUT/result.json --rank_file=$OUT/ranks-test.csv 2>&1 | tee $OUT/run.log
