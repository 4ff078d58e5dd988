#!/usr/bin/env bash
# After run.sh (its checkpoint in saved/): rank both splits with the best checkpoint, then break NDCG@10 down by the
# target's training popularity beside the CPU-preset TIGER and SASRec of docs/results/tiger-valid-test-gap/.
set -euo pipefail
D=../shared/data
OUT=docs/results/tiger-scientific-paper-es
GAP=docs/results/tiger-valid-test-gap
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=$D \
    --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --checkpoint_tag=paper-es --eval_only \
    --valid_rank_file=$OUT/ranks-valid.csv --rank_file=$OUT/ranks-test-eval.csv --result_file=$OUT/eval.json \
    2>&1 | tee $OUT/eval.log
cmp $OUT/ranks-test.csv $OUT/ranks-test-eval.csv && rm $OUT/ranks-test-eval.csv
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    TIGER-paper=$OUT/ranks-valid.csv,$OUT/ranks-test.csv \
    TIGER-cpu=$GAP/ranks-tiger-valid.csv,$GAP/ranks-tiger-test.csv \
    SASRec=$GAP/ranks-sasrec-valid.csv,$GAP/ranks-sasrec-test.csv \
    --out $OUT/breakdown.md --json $OUT/breakdown.json
# paired over the test users: SASRec first, then the CPU-preset TIGER and this one
python bench/paired_bootstrap.py $GAP/ranks-sasrec-test.csv $GAP/ranks-tiger-test.csv $OUT/ranks-test.csv \
    --names SASRec,TIGER-cpu,TIGER-paper --out $OUT/paired.md --json $OUT/paired.json
