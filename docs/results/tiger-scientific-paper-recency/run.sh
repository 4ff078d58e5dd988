#!/usr/bin/env bash
# TIGER, paper-size T5 (properties/generative.yaml), on amazon2018-scientific, to early stopping, with
# `recency_embedding: True` (not in the paper: each encoder token also gets a learned embedding of its item's place
# counted from the most recent one) and the learning rate given (default 5e-4). Everything else is
# docs/results/tiger-scientific-paper-es/'s run at 1e-3 (the default recipe with a 45-epoch cosine decay to zero,
# stopping_delta 0, patience 10). Run from the repository root; about 1 h 45 min on 2 cores.
#   bash docs/results/tiger-scientific-paper-recency/run.sh [LEARNING_RATE [HORIZON [WEIGHT_DECAY]]]
# HORIZON (default 45): the cosine reaches zero after this many epochs. Another value also validates every second
# epoch (eval_step 2, patience 10 validations) and caps the run at HORIZON epochs, where the learning rate is zero
# and further epochs cannot change the model; its files carry "-hHORIZON" (60: about 1 h 40 min).
# WEIGHT_DECAY (default: generative.yaml's 0.05): another value is passed as --weight_decay and adds "-wdWEIGHT_DECAY".
set -euo pipefail
LR=${1:-5e-4}
HORIZON=${2:-45}
WD=${3:-0.05}
OUT=docs/results/tiger-scientific-paper-recency
TAG=lr$LR
EXTRA=()
if [[ $HORIZON != 45 ]]; then
    TAG=lr$LR-h$HORIZON
    EXTRA=(--epochs="$HORIZON" --eval_step=2)
fi
if [[ $WD != 0.05 ]]; then
    TAG=$TAG-wd$WD
    EXTRA+=(--weight_decay="$WD")
fi
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --lr_decay_epochs="$HORIZON" --min_lr_ratio=0.0 --stopping_delta=0 --learning_rate="$LR" --recency_embedding=True \
    "${EXTRA[@]}" --checkpoint_tag="paper-recency-$TAG" --result_file=$OUT/result-$TAG.json \
    --valid_rank_file=$OUT/ranks-valid-$TAG.csv --rank_file=$OUT/ranks-test-$TAG.csv 2>&1 | tee $OUT/run-$TAG.log
