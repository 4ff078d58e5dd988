#!/usr/bin/env bash
# After run.sh (its best checkpoint in saved/, and that of docs/results/tiger-scientific-cpu-lr/run.sh 5e-4):
#  1. both TIGERs with each history's most recent item hidden (bench/drop_last_item.py), on test: how much each uses
#     that item;
#  2. test and validation NDCG@10 by the target's training popularity (bench/split_breakdown.py), beside SASRec of
#     docs/results/tiger-valid-test-gap/;
#  3. paired bootstraps over the test users: against the run without the key, against SASRec, and the two
#     hidden-item evaluations against each other.
#   bash docs/results/tiger-scientific-cpu-recency/analyse.sh [LEARNING_RATE]
set -euo pipefail
LR=${1:-5e-4}
D=../shared/data
OUT=docs/results/tiger-scientific-cpu-recency
BASE=docs/results/tiger-scientific-cpu-lr
GAP=docs/results/tiger-valid-test-gap
RUN=(--model=TIGER --dataset=amazon2018-scientific --data_path=$D --config_files=properties/cpu.yaml
     --learning_rate="$LR" --eval_only)
python bench/drop_last_item.py "${RUN[@]}" --recency_embedding=True --checkpoint_tag="cpu-recency-lr$LR" \
    --rank_file=$OUT/ranks-hidden-test-lr$LR.csv --result_file=$OUT/hidden-lr$LR.json 2>&1 | tee $OUT/hidden-lr$LR.log
python bench/drop_last_item.py "${RUN[@]}" --checkpoint_tag="cpu-lr$LR" \
    --rank_file=$OUT/ranks-hidden-test-base-lr$LR.csv --result_file=$OUT/hidden-base-lr$LR.json \
    2>&1 | tee $OUT/hidden-base-lr$LR.log
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    "TIGER-recency-lr$LR=$OUT/ranks-valid-lr$LR.csv,$OUT/ranks-test-lr$LR.csv" \
    "TIGER-lr$LR=$BASE/ranks-valid-lr$LR.csv,$BASE/ranks-test-lr$LR.csv" \
    SASRec=$GAP/ranks-sasrec-valid.csv,$GAP/ranks-sasrec-test.csv \
    --out $OUT/breakdown-lr$LR.md --json $OUT/breakdown-lr$LR.json
python bench/paired_bootstrap.py $BASE/ranks-test-lr$LR.csv $OUT/ranks-test-lr$LR.csv \
    --names TIGER-lr$LR,TIGER-recency-lr$LR --by_rank --out $OUT/paired-lr$LR.md --json $OUT/paired-lr$LR.json
python bench/paired_bootstrap.py $GAP/ranks-sasrec-test.csv $OUT/ranks-test-lr$LR.csv \
    --names SASRec,TIGER-recency-lr$LR --out $OUT/paired-sasrec-lr$LR.md --json $OUT/paired-sasrec-lr$LR.json
python bench/paired_bootstrap.py $OUT/ranks-hidden-test-base-lr$LR.csv $OUT/ranks-hidden-test-lr$LR.csv \
    --names TIGER-lr$LR-hidden,TIGER-recency-lr$LR-hidden --out $OUT/paired-hidden-lr$LR.md \
    --json $OUT/paired-hidden-lr$LR.json
