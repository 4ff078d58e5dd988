#!/usr/bin/env bash
# After run.sh (its best checkpoint in saved/; the first time also that of
# docs/results/tiger-scientific-paper-es/run.sh):
#  1. both paper-size TIGERs with each history's most recent item hidden (bench/drop_last_item.py), on test: how
#     much each uses that item;
#  2. test and validation NDCG@10 by the target's training popularity and the user's sequence length
#     (bench/split_breakdown.py), beside the run without the key, the CPU-preset run with it and SASRec;
#  3. paired bootstraps over the test users: against the run without the key, against SASRec, against the CPU
#     preset with the key, and the two hidden-item evaluations against each other.
#   bash docs/results/tiger-scientific-paper-recency/analyse.sh [LEARNING_RATE [HORIZON [WEIGHT_DECAY]]]
# (HORIZON and WEIGHT_DECAY as in run.sh: the files tagged "lrLR[-hHORIZON][-wdWEIGHT_DECAY]")
set -euo pipefail
LR=${1:-5e-4}
HORIZON=${2:-45}
WD=${3:-0.05}
TAG=lr$LR
[[ $HORIZON == 45 ]] || TAG=lr$LR-h$HORIZON
[[ $WD == 0.05 ]] || TAG=$TAG-wd$WD
D=../shared/data
OUT=docs/results/tiger-scientific-paper-recency
BASE=docs/results/tiger-scientific-paper-es
CPU=docs/results/tiger-scientific-cpu-recency
GAP=docs/results/tiger-valid-test-gap
RUN=(--model=TIGER --dataset=amazon2018-scientific --data_path=$D --lr_decay_epochs=$HORIZON --min_lr_ratio=0.0
     --stopping_delta=0 --eval_only)
python bench/drop_last_item.py "${RUN[@]}" --learning_rate="$LR" --recency_embedding=True \
    --checkpoint_tag="paper-recency-$TAG" --rank_file=$OUT/ranks-hidden-test-$TAG.csv \
    --result_file=$OUT/hidden-$TAG.json 2>&1 | tee $OUT/hidden-$TAG.log
# paper-es's hidden-item evaluation does not depend on LEARNING_RATE: made once (it needs paper-es's checkpoint)
if [[ ! -f $OUT/hidden-base.json ]]; then
    python bench/drop_last_item.py "${RUN[@]}" --checkpoint_tag=paper-es \
        --rank_file=$OUT/ranks-hidden-test-base.csv --result_file=$OUT/hidden-base.json 2>&1 | tee $OUT/hidden-base.log
fi
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    TIGER-paper-recency-$TAG=$OUT/ranks-valid-$TAG.csv,$OUT/ranks-test-$TAG.csv \
    TIGER-paper=$BASE/ranks-valid.csv,$BASE/ranks-test.csv \
    TIGER-cpu-recency=$CPU/ranks-valid-lr1e-3.csv,$CPU/ranks-test-lr1e-3.csv \
    SASRec=$GAP/ranks-sasrec-valid.csv,$GAP/ranks-sasrec-test.csv \
    --out $OUT/breakdown-$TAG.md --json $OUT/breakdown-$TAG.json
python bench/paired_bootstrap.py $BASE/ranks-test.csv $OUT/ranks-test-$TAG.csv \
    --names TIGER-paper,TIGER-paper-recency-$TAG --by_rank --out $OUT/paired-$TAG.md --json $OUT/paired-$TAG.json
python bench/paired_bootstrap.py $GAP/ranks-sasrec-test.csv $OUT/ranks-test-$TAG.csv \
    --names SASRec,TIGER-paper-recency-$TAG --out $OUT/paired-sasrec-$TAG.md --json $OUT/paired-sasrec-$TAG.json
python bench/paired_bootstrap.py $CPU/ranks-test-lr1e-3.csv $OUT/ranks-test-$TAG.csv \
    --names TIGER-cpu-recency-lr1e-3,TIGER-paper-recency-$TAG --out $OUT/paired-cpu-$TAG.md \
    --json $OUT/paired-cpu-$TAG.json
python bench/paired_bootstrap.py $OUT/ranks-hidden-test-base.csv $OUT/ranks-hidden-test-$TAG.csv \
    --names TIGER-paper-hidden,TIGER-paper-recency-$TAG-hidden --out $OUT/paired-hidden-$TAG.md \
    --json $OUT/paired-hidden-$TAG.json
