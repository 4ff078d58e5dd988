#!/usr/bin/env bash
# After run.sh LR (its best checkpoint in saved/): rank the validation split with that checkpoint, then break test
# and validation NDCG@10 down by the target's training popularity, and compare over the same test users, beside the
# CPU-preset TIGER at 1e-3 with a 40-epoch cosine (the only 1e-3 run with rank files) and SASRec of
# docs/results/tiger-valid-test-gap/.
#   bash docs/results/tiger-scientific-cpu-lr/breakdown.sh 3e-3
set -euo pipefail
LR=${1:?usage: breakdown.sh LEARNING_RATE}
D=../shared/data
OUT=docs/results/tiger-scientific-cpu-lr
GAP=docs/results/tiger-valid-test-gap
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=$D \
    --config_files=properties/cpu.yaml --learning_rate="$LR" --checkpoint_tag="cpu-lr$LR" --eval_only \
    --valid_rank_file=$OUT/ranks-valid-lr$LR.csv --rank_file=$OUT/ranks-test-eval-lr$LR.csv \
    --result_file=$OUT/eval-lr$LR.json 2>&1 | tee $OUT/eval-lr$LR.log
cmp $OUT/ranks-test-lr$LR.csv $OUT/ranks-test-eval-lr$LR.csv && rm $OUT/ranks-test-eval-lr$LR.csv
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    "TIGER-lr$LR=$OUT/ranks-valid-lr$LR.csv,$OUT/ranks-test-lr$LR.csv" \
    TIGER-1e-3-cos40=$GAP/ranks-tiger-valid.csv,$GAP/ranks-tiger-test.csv \
    SASRec=$GAP/ranks-sasrec-valid.csv,$GAP/ranks-sasrec-test.csv \
    --out $OUT/breakdown-lr$LR.md --json $OUT/breakdown-lr$LR.json
python bench/paired_bootstrap.py $GAP/ranks-sasrec-test.csv $GAP/ranks-tiger-test.csv $OUT/ranks-test-lr$LR.csv \
    --names SASRec,TIGER-1e-3-cos40,TIGER-lr$LR --out $OUT/paired-lr$LR.md --json $OUT/paired-lr$LR.json
