#!/usr/bin/env bash
# After run.sh (its best checkpoint in saved/): rank the validation split with that checkpoint, then break test and
# validation NDCG@10 down by the target's training popularity, and compare over the same test users, beside the
# paper-size run at dropout 0.1 (docs/results/tiger-scientific-paper-es/) and SASRec of docs/results/tiger-valid-test-gap/.
set -euo pipefail
D=../shared/data
OUT=docs/results/tiger-scientific-paper-dropout
ES=docs/results/tiger-scientific-paper-es
GAP=docs/results/tiger-valid-test-gap
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=$D \
    --dropout_rate=0.2 --lr_decay_epochs=45 --min_lr_ratio=0.0 --stopping_delta=0 --checkpoint_tag=paper-dropout0.2 \
    --eval_only --valid_rank_file=$OUT/ranks-valid.csv --rank_file=$OUT/ranks-test-eval.csv --result_file=$OUT/eval.json \
    2>&1 | tee $OUT/eval.log
cmp $OUT/ranks-test.csv $OUT/ranks-test-eval.csv && rm $OUT/ranks-test-eval.csv
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    TIGER-paper-dropout0.2=$OUT/ranks-valid.csv,$OUT/ranks-test.csv \
    TIGER-paper-dropout0.1=$ES/ranks-valid.csv,$ES/ranks-test.csv \
    SASRec=$GAP/ranks-sasrec-valid.csv,$GAP/ranks-sasrec-test.csv \
    --out $OUT/breakdown.md --json $OUT/breakdown.json
# paired over the test users: SASRec first, then the paper-size runs at dropout 0.1 and 0.2
python bench/paired_bootstrap.py $GAP/ranks-sasrec-test.csv $ES/ranks-test.csv $OUT/ranks-test.csv \
    --names SASRec,TIGER-paper-dropout0.1,TIGER-paper-dropout0.2 --out $OUT/paired.md --json $OUT/paired.json
