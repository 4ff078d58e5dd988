#!/usr/bin/env bash
# Issue 12 point 2 (the hand-over): the trace gate (`trace_gate`, the item's view of the start token and the trace
# through a learnt per-head bias that starts closed) and joint decoding's distinct item beam (`item_beam: distinct`).
# Reduced: 3 SFT epochs, one annotation round. Stage 1 is the weight-decay-0.15 paper-size recency TIGER
# (valid 0.0770), made first by
#   bash docs/results/tiger-scientific-paper-recency/run.sh 3e-4 60 0.15
# SFT as in ../streamrec-scientific-paper-attention-lr/: 20 warm-up steps, a cosine over 3 epochs, sft_learning_rate
# 1.5e-4, trace_separator on, validation after every epoch, then the test of the best with per-user ranks.
# Run from the repository root; ~3 min per hand-over, ~17 min per SFT run.
#   bash docs/results/streamrec-scientific-paper-gate/run.sh [RUN ...]
# RUN: handover:GATE:BEAM — stage 1's weights (both decoders) evaluated with STREAM-Rec's own decoding before any SFT
#        step, GATE the trace gate's starting bias (or none), BEAM the item beam (pairs | distinct);
#      sft:GATE[:TRACE[:SFT_LR[:SEED]]] — SFT with that gate (or none), item_beam distinct, reasoning_trace TRACE
#        (annotated, default, | constant), sft_learning_rate SFT_LR (default 1.5e-4), seed SEED (default: the config's);
#      rl:GATE[:TRACE[:SFT_LR]] — after that SFT run: GRPO from its best checkpoint with its π_ref, reduced to 2 epochs
#        of 100 rollout batches (every other GRPO key at its default, as in ../streamrec-scientific-state-loss/).
set -euo pipefail
TIGER=saved/TIGER-amazon2018-scientific-paper-recency-lr3e-4-h60-wd0.15.pth
O=docs/results/streamrec-scientific-paper-gate
BASE=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --recency_embedding=True
      --trace_separator=True)
SFT=(--stages="[sft]" --init_checkpoint=$TIGER --sft_rounds=1 --sft_epochs_per_round=3 --sft_warmup_steps=20 --sft_lr_decay_epochs=3)
for RUN in "$@"; do
    IFS=: read -r KIND GATE THIRD LR SEED <<< "$RUN"
    KEY=()
    [[ $GATE == none ]] || KEY+=(--trace_gate="$GATE")
    if [[ $KIND == handover ]]; then
        NAME=handover-gate$GATE-$THIRD
        # the hand-over's weights: as SFT starts from TIGER (bench/position_nll.py's hand_over: init_checkpoint's
        # loading, then the reasoning decoder takes the direct decoder's), the gate at its start (if any)
        python - "$TIGER" "saved/STREAMRec-amazon2018-scientific-paper-$NAME-sft.pth" "${BASE[@]:2}" "${KEY[@]}" <<'PY'
import sys
sys.path.insert(0, "bench")
from position_nll import hand_over
from recbole_streamrec.config import config_from_args
from recbole_streamrec.quick_start import load_data
from recbole_streamrec.trainer.checkpoint import save_checkpoint
from recbole_streamrec.utils import get_model
tiger, out, *overrides = sys.argv[1:]
config = config_from_args("STREAMRec", "amazon2018-scientific", None, overrides)
_, train, _, _ = load_data(config)
model = hand_over(config, get_model("STREAMRec")(config, train._dataset), tiger)
save_checkpoint({"model": "STREAMRec", "state_dict": model.state_dict()}, out)
PY
        python run_recbole_streamrec.py "${BASE[@]}" "${KEY[@]}" --item_beam="$THIRD" --stages="[sft]" --checkpoint_tag="paper-$NAME" \
            --eval_only --result_file=$O/$NAME.json > $O/$NAME.log 2>&1
        continue
    fi
    NAME=sft-gate$GATE-${THIRD:-annotated}
    LR=${LR:-1.5e-4}
    [[ $LR == 1.5e-4 ]] || NAME+=-lr$LR
    [[ -z ${SEED:-} ]] || { NAME+=-seed$SEED; KEY+=(--seed="$SEED"); }
    if [[ $KIND == rl ]]; then
        python run_recbole_streamrec.py "${BASE[@]}" "${KEY[@]}" --item_beam=distinct --reasoning_trace="${THIRD:-annotated}" \
            --stages="[rl]" --rl_epochs=2 --rl_steps_per_epoch=100 --init_checkpoint=saved/STREAMRec-amazon2018-scientific-paper-$NAME-sft.pth \
            --reference_checkpoint=saved/STREAMRec-amazon2018-scientific-paper-$NAME-pi_ref.pth --checkpoint_tag="paper-rl-$NAME" \
            --result_file=$O/rl-$NAME.json --valid_rank_file=$O/ranks-valid-rl-$NAME.csv --rank_file=$O/ranks-test-rl-$NAME.csv \
            > $O/rl-$NAME.log 2>&1
        continue
    fi
    python run_recbole_streamrec.py "${BASE[@]}" "${SFT[@]}" "${KEY[@]}" --item_beam=distinct --sft_learning_rate="$LR" \
        --reasoning_trace="${THIRD:-annotated}" --checkpoint_tag="paper-$NAME" --result_file=$O/$NAME.json \
        --valid_rank_file=$O/ranks-valid-$NAME.csv --rank_file=$O/ranks-test-$NAME.csv > $O/$NAME.log 2>&1
done
