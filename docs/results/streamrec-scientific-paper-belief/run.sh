#!/usr/bin/env bash
# Issue 12: a trace that is not the answer. `trace_start: belief` against the default `zero`, one SFT epoch each
# (reduced), everything else as docs/results/streamrec-scientific-paper-separator/'s run with the separator.
# Stage 1 is the weight-decay-0.15 paper-size recency TIGER (valid 0.0770), made first by
#   bash docs/results/tiger-scientific-paper-recency/run.sh 3e-4 60 0.15
# Each run: one annotation, one SFT epoch at 1.5e-4 (100 warm-up steps, cosine over that epoch), trace_separator on,
# then validation and test, with per-user ranks for paired tests. Run from the repository root; about 8 min each.
#   bash docs/results/streamrec-scientific-paper-belief/run.sh [START ...]   (default: belief zero)
set -euo pipefail
TIGER=saved/TIGER-amazon2018-scientific-paper-recency-lr3e-4-h60-wd0.15.pth
O=docs/results/streamrec-scientific-paper-belief
SFT=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --recency_embedding=True
     --stages="[sft]" --init_checkpoint=$TIGER --sft_rounds=1 --sft_epochs_per_round=1 --sft_learning_rate=0.00015
     --sft_lr_decay_epochs=1 --trace_separator=True)
STARTS=("$@")
[[ ${#STARTS[@]} -gt 0 ]] || STARTS=(belief zero)
for S in "${STARTS[@]}"; do
    python run_recbole_streamrec.py "${SFT[@]}" --trace_start="$S" --checkpoint_tag="paper-start-$S" \
        --result_file=$O/sft-$S.json --valid_rank_file=$O/ranks-valid-$S.csv --rank_file=$O/ranks-test-$S.csv \
        > $O/sft-$S.log 2>&1
done
