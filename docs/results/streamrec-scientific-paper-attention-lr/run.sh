#!/usr/bin/env bash
# Issue 12 point 2 (the hand-over): SFT with the policy decoder's self-attention at its own learning rate
# (`sft_attention_learning_rate`), against the same SFT without it. Reduced: 3 SFT epochs, one annotation round.
# Stage 1 is the weight-decay-0.15 paper-size recency TIGER (valid 0.0770), made first by
#   bash docs/results/tiger-scientific-paper-recency/run.sh 3e-4 60 0.15
# Each run: SFT with 20 warm-up steps and a cosine over 3 epochs, trace_separator on, validation after every epoch,
# then the test of the best, with per-user ranks for paired tests. Run from the repository root; ~17 min each.
#   bash docs/results/streamrec-scientific-paper-attention-lr/run.sh [ATTENTION_LR[:SFT_LR[:TRACE_START[:TRACE]]] ...]
# ATTENTION_LR: sft_attention_learning_rate, or "none" (the attention learns at SFT_LR like every other weight);
# SFT_LR: sft_learning_rate (default 1.5e-4); TRACE_START: zero (default) or belief; TRACE: reasoning_trace, annotated
# (default) or constant. Default runs: 1e-3 none.
# "handover" (after the "none" run) evaluates stage 1's weights with STREAM-Rec's own decoding before any SFT step:
# the run's π_ref file (the TIGER weights in both decoders) is copied to a checkpoint and evaluated with --eval_only.
set -euo pipefail
TIGER=saved/TIGER-amazon2018-scientific-paper-recency-lr3e-4-h60-wd0.15.pth
O=docs/results/streamrec-scientific-paper-attention-lr
SFT=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --recency_embedding=True
     --stages="[sft]" --init_checkpoint=$TIGER --sft_rounds=1 --sft_epochs_per_round=3 --sft_warmup_steps=20
     --sft_lr_decay_epochs=3 --trace_separator=True)
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] || RUNS=(1e-3 none)
for RUN in "${RUNS[@]}"; do
    if [[ $RUN == handover ]]; then
        cp saved/STREAMRec-amazon2018-scientific-paper-attn-none-pi_ref.pth saved/STREAMRec-amazon2018-scientific-paper-handover-sft.pth
        python run_recbole_streamrec.py "${SFT[@]}" --checkpoint_tag=paper-handover --eval_only \
            --result_file=$O/handover.json > $O/handover.log 2>&1
        continue
    fi
    IFS=: read -r A LR START TRACE <<< "$RUN"
    LR=${LR:-1.5e-4}
    START=${START:-zero}
    TRACE=${TRACE:-annotated}
    NAME=$A
    [[ $LR == 1.5e-4 ]] || NAME+=-lr$LR
    [[ $START == zero ]] || NAME+=-$START
    [[ $TRACE == annotated ]] || NAME+=-$TRACE
    KEY=(--sft_learning_rate="$LR" --trace_start="$START" --reasoning_trace="$TRACE")
    [[ $A == none ]] || KEY+=(--sft_attention_learning_rate="$A")
    python run_recbole_streamrec.py "${SFT[@]}" "${KEY[@]}" --checkpoint_tag="paper-attn-$NAME" \
        --result_file=$O/sft-attn-$NAME.json --valid_rank_file=$O/ranks-valid-$NAME.csv \
        --rank_file=$O/ranks-test-$NAME.csv > $O/sft-attn-$NAME.log 2>&1
done
