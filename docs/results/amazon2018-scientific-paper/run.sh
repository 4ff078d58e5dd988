#!/usr/bin/env bash
# Issue 12 point 5 on amazon2018-scientific with the paper-size T5 (properties/generative.yaml), on a 2-core CPU.
# TIGER: the weight-decay-0.3 run of ../tiger-scientific-paper-recency/ (lr 3e-4 and weight decay picked on validation
# there, 60-epoch cosine, early stopping; 1 h 39 min), reused by table2 (not retrained; its checkpoint must be in saved/):
#   bash docs/results/tiger-scientific-paper-recency/run.sh 3e-4 60 0.3
# STREAM-Rec: stage 1 is that TIGER (init_checkpoint), then SFT rounds (annotate, 2 epochs) until a round does not raise
# validation NDCG@10 (at most 3), with the hand-over of ../streamrec-scientific-paper-gate/ (trace_gate -8,
# item_beam distinct, trace_separator) at sft_learning_rate 5e-5 (picked there on validation over {5e-5, 1.5e-4}),
# then GRPO in epochs of 100 rollout batches, stopped after one epoch without a better validation (at most 3).
# Run from the repository root (about 1 h 30 min in all):
#   bash docs/results/amazon2018-scientific-paper/run.sh [STEP ...]   # default: every step, in this order
# STEP: table2 | ranks (per-user ranks of its SFT and RL checkpoints) | tiger-more (the equal-budget control: TIGER's own
# loss for as many more epochs as STREAM-Rec's SFT trained, on SFT's schedule) | constant (the same SFT, one constant
# trace) | none (the same SFT, no trace: l = 0, no separator or gate) | paired (paired bootstrap tests of the rank files)
# | seed:SEED (not in the default list: the learned-trace SFT's first round at another seed, for the hand-over)
set -euo pipefail
O=docs/results/amazon2018-scientific-paper
T=docs/results/tiger-scientific-paper-recency
TIGER_TAG=paper-recency-lr3e-4-h60-wd0.3
STAGE1=saved/TIGER-amazon2018-scientific-$TIGER_TAG.pth
run() {  # run MODEL [--key=value ...]: one run on this dataset
    local model=$1; shift
    python run_recbole_streamrec.py --model="$model" --dataset=amazon2018-scientific --data_path=../shared/data "$@"
}
MODEL=(recency_embedding=True trace_separator=True trace_gate=-8 item_beam=distinct)
SFT=(sft_learning_rate=5e-5 sft_warmup_steps=20 sft_rounds=3 sft_epochs_per_round=2 sft_lr_decay_epochs=6 stopping_step=1)
LABEL="Paper-size T5 on a 2-core CPU (no GPU). TIGER: lr and weight decay picked on validation (in docs/results/tiger-scientific-paper-recency/), to early stopping within a 60-epoch cosine (best at epoch 38). STREAM-Rec: stage 1 is that TIGER (not the paper's pretraining), so its train time includes TIGER's; SFT rounds of 2 epochs to early stopping (a round that does not raise validation ends it), sft_learning_rate 5e-5 picked on validation in docs/results/streamrec-scientific-paper-gate/ from another TIGER; GRPO reduced to epochs of 100 rollout batches (early stopping, at most 3). Unequal budget in STREAM-Rec's favour. recency_embedding on for both (not in the paper)."
STEPS=("$@")
[[ ${#STEPS[@]} -gt 0 ]] || STEPS=(table2 ranks tiger-more constant none paired)
scoped() { local m=$1; shift; for kv in "$@"; do printf '%s\n' "$m:$kv"; done; }
for STEP in "${STEPS[@]}"; do
    case $STEP in
    table2)
        mapfile -t EXTRA < <(scoped TIGER recency_embedding=True learning_rate=3e-4 weight_decay=0.3 epochs=60 eval_step=2 \
                                 lr_decay_epochs=60 min_lr_ratio=0.0 stopping_delta=0 checkpoint_tag=$TIGER_TAG
                             scoped STREAMRec "stages=[sft,rl]" init_checkpoint=$STAGE1 \
                                 "${MODEL[@]}" "${SFT[@]}" rl_epochs=3 rl_steps_per_epoch=100)
        python bench/table2.py --dataset amazon2018-scientific --data_path ../shared/data --out $O --models TIGER,STREAMRec,Pop \
            --no_tune_generative --lrs 1e-3 --reuse TIGER=$T/result-lr3e-4-h60-wd0.3.json --extra "${EXTRA[@]}" --label "$LABEL"
        ;;
    ranks)  # per-user ranks of the table2 run's SFT and RL checkpoints (its own test metrics again, ~3 min each)
        TAG=$(python -c "import json, sys; sys.path.insert(0, 'bench'); from table2 import arg_value
print(arg_value(json.load(open('$O/runs/STREAMRec.json'))['args'], 'checkpoint_tag'))")
        for STAGE in sft rl; do
            run STREAMRec \
                "${MODEL[@]/#/--}" --stages="[$STAGE]" --checkpoint_tag="$TAG" --eval_only --result_file=$O/eval-$STAGE.json \
                --valid_rank_file=$O/ranks-valid-$STAGE.csv --rank_file=$O/ranks-test-$STAGE.csv > $O/eval-$STAGE.log 2>&1
        done
        ;;
    tiger-more)
        EPOCHS=$(grep -c '\[sft\] epoch [0-9]* training' $O/runs/STREAMRec.log)
        run TIGER \
            --recency_embedding=True --init_checkpoint=$STAGE1 --epochs="$EPOCHS" \
            --learning_rate=5e-5 --warmup_steps=20 --lr_decay_epochs=6 --stopping_step=1 --checkpoint_tag=paper-t2-more \
            --result_file=$O/tiger-more.json --valid_rank_file=$O/ranks-valid-tiger-more.csv \
            --rank_file=$O/ranks-test-tiger-more.csv > $O/tiger-more.log 2>&1
        ;;
    seed:*)  # point 2 again at another seed: the learned-trace SFT's first round only (2 epochs)
        SEED=${STEP#seed:} ONE=()
        for KV in "${SFT[@]}"; do [[ $KV == sft_rounds=* ]] || ONE+=("--$KV"); done
        run STREAMRec \
            "${MODEL[@]/#/--}" "${ONE[@]}" --sft_rounds=1 --seed="$SEED" --stages="[sft]" \
            --init_checkpoint=$STAGE1 --checkpoint_tag=paper-t2-seed$SEED \
            --result_file=$O/seed$SEED.json > $O/seed$SEED.log 2>&1
        ;;
    none)  # no trace: the item right after the start token, as stage 1's direct decoder (nothing to gate or separate)
        run STREAMRec \
            --recency_embedding=True --reasoning_steps=0 "${SFT[@]/#/--}" --stages="[sft]" \
            --init_checkpoint=$STAGE1 --checkpoint_tag=paper-t2-none \
            --result_file=$O/none.json --valid_rank_file=$O/ranks-valid-none.csv --rank_file=$O/ranks-test-none.csv \
            > $O/none.log 2>&1
        ;;
    constant)  # the same SFT with one constant trace for every row (reasoning_trace: constant)
        run STREAMRec \
            "${MODEL[@]/#/--}" "${SFT[@]/#/--}" --stages="[sft]" --init_checkpoint=$STAGE1 \
            --reasoning_trace=constant --checkpoint_tag=paper-t2-constant --result_file=$O/constant.json \
            --valid_rank_file=$O/ranks-valid-constant.csv --rank_file=$O/ranks-test-constant.csv > $O/constant.log 2>&1
        ;;
    paired)
        for SPLIT in test valid; do
            python bench/paired_bootstrap.py $T/ranks-$SPLIT-lr3e-4-h60-wd0.3.csv $O/ranks-$SPLIT-sft.csv $O/ranks-$SPLIT-rl.csv \
                --split $SPLIT --names TIGER,STREAM-Rec-SFT,STREAM-Rec-RL --out $O/paired-$SPLIT.md --json $O/paired-$SPLIT.json
            python bench/paired_bootstrap.py $O/ranks-$SPLIT-sft.csv $O/ranks-$SPLIT-rl.csv --split $SPLIT \
                --names STREAM-Rec-SFT,STREAM-Rec-RL --out $O/paired-rl-$SPLIT.md --json $O/paired-rl-$SPLIT.json
            python bench/paired_bootstrap.py $O/ranks-$SPLIT-tiger-more.csv $O/ranks-$SPLIT-sft.csv --split $SPLIT \
                --names TIGER-more-epochs,STREAM-Rec-SFT --out $O/paired-equal-$SPLIT.md --json $O/paired-equal-$SPLIT.json
            python bench/paired_bootstrap.py $O/ranks-$SPLIT-constant.csv $O/ranks-$SPLIT-sft.csv $O/ranks-$SPLIT-none.csv \
                --split $SPLIT --names SFT-constant-trace,SFT-learned-trace,SFT-no-trace --out $O/paired-traces-$SPLIT.md \
                --json $O/paired-traces-$SPLIT.json
        done
        ;;
    *) echo "unknown step $STEP (table2 | ranks | tiger-more | constant | none | paired | seed:SEED)" >&2; exit 2 ;;
    esac
done
