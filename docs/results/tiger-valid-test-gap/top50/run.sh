#!/bin/bash
# Is the held-out item in the top 50 at all? TIGER (beam 50) and SASRec of ../, evaluated with topk [10, 50].
# Run from the repository root.
set -euo pipefail
OUT=docs/results/tiger-valid-test-gap/top50
D=${DATA_PATH:-../shared/data}
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=$D \
    --config_files=properties/cpu.yaml --checkpoint_tag=gap --lr_decay_epochs=40 --epochs=40 --eval_only \
    --beam_size=50 --topk=[10,50] --compare_with_pop=False \
    --valid_rank_file=$OUT/ranks-tiger-valid.csv --rank_file=$OUT/ranks-tiger-test.csv \
    --result_file=$OUT/tiger.json > $OUT/tiger.log 2>&1
python run_recbole_streamrec.py --model=SASRec --dataset=amazon2018-scientific --data_path=$D \
    --checkpoint_tag=gap --eval_only --topk=[10,50] \
    --valid_rank_file=$OUT/ranks-sasrec-valid.csv --rank_file=$OUT/ranks-sasrec-test.csv \
    --result_file=$OUT/sasrec.json > $OUT/sasrec.log 2>&1
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter --k 50 --metric recall \
    TIGER=$OUT/ranks-tiger-valid.csv,$OUT/ranks-tiger-test.csv SASRec=$OUT/ranks-sasrec-valid.csv,$OUT/ranks-sasrec-test.csv \
    --out $OUT/breakdown-recall50.md --json $OUT/breakdown-recall50.json > /dev/null
