#!/usr/bin/env bash
# Issue 12 point 2 at the paper size, with and without `trace_separator` (reduced: ONE SFT epoch each).
# Stage 1 is the weight-decay-0.15 paper-size recency TIGER (valid 0.0770), made first by
#   bash docs/results/tiger-scientific-paper-recency/run.sh 3e-4 60 0.15
# Both runs: the annotated trace (l = 4, default keys), one annotation round, one SFT epoch at 1.5e-4 (100 warm-up
# steps, cosine over that epoch), then validation and test. Run from the repository root; about 8 min each on 2 cores.
#   bash docs/results/streamrec-scientific-paper-separator/run.sh
set -euo pipefail
TIGER=saved/TIGER-amazon2018-scientific-paper-recency-lr3e-4-h60-wd0.15.pth
O=docs/results/streamrec-scientific-paper-separator
SFT=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --recency_embedding=True
     --stages="[sft]" --init_checkpoint=$TIGER --sft_rounds=1 --sft_epochs_per_round=1 --sft_learning_rate=0.00015
     --sft_lr_decay_epochs=1)
for SEP in false true; do
    python run_recbole_streamrec.py "${SFT[@]}" --trace_separator=$SEP --checkpoint_tag=paper-wd-sep-$SEP \
        --result_file=$O/sft-separator-$SEP.json > $O/sft-separator-$SEP.log 2>&1
done
