#!/bin/bash
# The test top-10 lists of the TIGER and SASRec of ../ (checkpoints in saved/ from ../'s commands), then what takes
# rank 1. Run from the repository root.
set -euo pipefail
O=docs/results/tiger-valid-test-gap
D=${DATA_PATH:-../shared/data}
python bench/top_items.py --items_file=$O/top-items/top10-tiger.csv --model=TIGER --dataset=amazon2018-scientific \
    --data_path=$D --config_files=properties/cpu.yaml --checkpoint_tag=gap --lr_decay_epochs=40 --epochs=40 \
    --compare_with_pop=False --eval_only --rank_file=$O/top-items/ranks-tiger.csv > $O/top-items/tiger.log 2>&1
python bench/top_items.py --items_file=$O/top-items/top10-sasrec.csv --model=SASRec --dataset=amazon2018-scientific \
    --data_path=$D --checkpoint_tag=gap --eval_only --rank_file=$O/top-items/ranks-sasrec.csv > $O/top-items/sasrec.log 2>&1
python bench/top_items.py --summary --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    TIGER=$O/top-items/top10-tiger.csv,$O/top-items/ranks-tiger.csv SASRec=$O/top-items/top10-sasrec.csv,$O/top-items/ranks-sasrec.csv \
    > $O/top-items/summary.md
