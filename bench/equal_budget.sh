#!/usr/bin/env bash
# TIGER and STREAM-Rec at equal training time, side by side on one machine (issue 12, point 5; issue 9, point 7).
#
#   bash bench/equal_budget.sh OUT_DIR [DATA_PATH]
#
# Builds the semantic IDs and neighbour table once (cached under saved/cache/), then runs the chosen jobs at the
# same time (on a GPU they share it; on a CPU give each --threads=1 in EXTRA and run as many as there are cores).
# The budgeted jobs get the same seconds of training (time_budget: optimiser steps and their data,
# STREAM-Rec's annotation too; validation and test are not counted), one batch size and learning rate, a decay
# that ends with the budget (lr_decay_horizon: budget), and are validated when the budget is spent:
#   tiger     TIGER
#   learned   STREAM-Rec, the paper's stages: pretraining, SFT on annotated traces, GRPO
#   constant  the same STREAM-Rec with one constant trace for every row (the ablation of the trace)
#   none      the same STREAM-Rec with no trace (reasoning_steps 0)
#   pure_rl   the same STREAM-Rec without SFT (stages [pretrain, rl]): GRPO gets SFT's and GRPO's shares of the budget
#   tiger_es  TIGER with the configured recipe (batch, learning rate and decay of the config files), validated
#             every epoch, to early stopping or until DEADLINE's time is up, whichever comes first
# STREAM-Rec's budget is split over its stages (PT_SHARE / SFT_SHARE / the rest to GRPO).
# Writes OUT_DIR/<job>.json (run_recbole_streamrec.py --result_file), OUT_DIR/<job>.log and OUT_DIR/table.md
# (bench/collect_results.py, over every job's result in OUT_DIR, so jobs run in turns into one folder share a table).
#
# Environment (defaults in brackets):
#   DATASET [amazon2023-instruments]; JOBS ["tiger learned constant"]; CONFIG_FILES [none: the paper-size T5]
#   BUDGET [180] seconds of training a job, or "auto": what DEADLINE leaves once the IDs are ready, less RESERVE
#   DEADLINE [0: none] seconds from the start by which every job must have ended (jobs still running are stopped)
#   RESERVE [240] seconds of a job's wall time that are not training (loading, validation, test)
#   PT_SHARE [60], SFT_SHARE [30] percent of STREAM-Rec's budget; BATCH [1024]; LR [0.002]; EVAL_BATCH [4096]
#   EXTRA [more --key=value for every job, e.g. --threads=4]
#   RANKS [0]; 1: each job also writes OUT_DIR/ranks-<job>.csv (--rank_file: each test user's rank of the held-out
#   item, from the job's last stage; one more test evaluation a job), for bench/paired_bootstrap.py
#   FROM_PT [empty]; a checkpoint tag, e.g. "learned": constant, none and pure_rl start from that earlier run's
#   stage 1 (saved/STREAMRec-<DATASET>-<tag>-pretrain.pth and -pi_ref.pth, which the learned job writes) instead of
#   training their own, which with the same configuration and seed would be the same PT_SHARE seconds: they run
#   stages [sft, rl] (pure_rl [rl]) with their usual SFT and GRPO budgets. Give the same settings as that run.
#   A learned job run with FROM_PT (another tag than its own, e.g. a run of stages [pretrain] alone) starts from that
#   stage 1 too, so that every STREAM-Rec job of the folder shares one stage 1.
set -uo pipefail

OUT=${1:?usage: bash bench/equal_budget.sh OUT_DIR [DATA_PATH]}
DATA=${2:-../shared/data}
DATASET=${DATASET:-amazon2023-instruments}
JOBS=${JOBS:-tiger learned constant}
BUDGET=${BUDGET:-180}
DEADLINE=${DEADLINE:-0}
RESERVE=${RESERVE:-240}
PT_SHARE=${PT_SHARE:-60}
SFT_SHARE=${SFT_SHARE:-30}
BATCH=${BATCH:-1024}
LR=${LR:-0.002}
EVAL_BATCH=${EVAL_BATCH:-4096}
EXTRA=${EXTRA:-}
RANKS=${RANKS:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
say() { echo "[equal_budget] $*"; }

files=()
[ -n "${CONFIG_FILES:-}" ] && files=(--config_files="$CONFIG_FILES")
# every job: the same data, T5 and evaluation; no Pop floor (it is the same for all)
common=(--dataset="$DATASET" --data_path="$DATA" "${files[@]}" --eval_batch_size="$EVAL_BATCH"
        --compare_with_pop=False --progress_interval=60 $EXTRA)

say "$(date -u +%FT%TZ) $DATASET, jobs: $JOBS"
from_pt=() sft_rl=() only_rl=("--stages=[pretrain,rl]")  # by default every job trains its own stage 1
if [ -n "${FROM_PT:-}" ]; then  # stage 1 of an earlier run: checked before anything is built or trained
    stage1=saved/STREAMRec-$DATASET-$FROM_PT
    for file in "$stage1-pretrain.pth" "$stage1-pi_ref.pth"; do
        [ -f "$file" ] || { say "FROM_PT=$FROM_PT: $file not found (run the learned job with these settings first)"; exit 2; }
    done
    from_pt=(--init_checkpoint="$stage1-pretrain.pth" --reference_checkpoint="$stage1-pi_ref.pth")
    sft_rl=("--stages=[sft,rl]") only_rl=("--stages=[rl]")
    say "the STREAM-Rec jobs start from $FROM_PT's stage 1 (${from_pt[*]})"
fi
python - <<'EOF' 2>&1 | tee -a "$OUT/machine.txt"
import os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, GPU: {gpu}")
EOF
# the IDs are built before any job runs: with every core (EXTRA's --threads=N is for the jobs side by side)
prepare=()
for arg in "${common[@]}"; do [[ $arg == --threads=* ]] || prepare+=("$arg"); done
env -u OMP_NUM_THREADS python -c "import sys; sys.path.insert(0, 'bench'); import _common; _common.child_prepare()" \
    "${prepare[@]}" --model=STREAMRec --output="$OUT/prepare.json" >> "$OUT/prepare.log" 2>&1 \
    || { say "preparing the semantic IDs failed:"; tail -20 "$OUT/prepare.log"; exit 1; }
say "semantic IDs and neighbours ready after $(elapsed) s"

if [ "$BUDGET" = auto ]; then
    [ "$DEADLINE" -gt 0 ] || { say "BUDGET=auto needs DEADLINE"; exit 2; }
    BUDGET=$((DEADLINE - $(elapsed) - RESERVE))
    [ "$BUDGET" -ge 30 ] || { say "only $BUDGET s of training would be left: no job started"; exit 1; }
fi
PT=$((BUDGET * PT_SHARE / 100)); SFT=$((BUDGET * SFT_SHARE / 100)); RL=$((BUDGET - PT - SFT))
say "$BUDGET s of training a budgeted job (STREAM-Rec: PT $PT s, SFT $SFT s, RL $RL s)"
budgeted=(--train_batch_size="$BATCH" --learning_rate="$LR" --pt_learning_rate="$LR" --sft_learning_rate="$LR"
          --lr_decay_horizon=budget --warmup_steps=100 --sft_warmup_steps=50 --eval_step=1000)
stages=(--model=STREAMRec "${budgeted[@]}" --pt_time_budget="$PT" --sft_time_budget="$SFT" --rl_steps_per_epoch=50)
stream=("${stages[@]}" --rl_time_budget="$RL")

run_job() {  # name, then its own arguments
    local name=$1; shift
    local limit=()
    [ "$DEADLINE" -gt 0 ] && limit=(timeout --signal=TERM "$((DEADLINE - $(elapsed)))")
    local ranks=()
    [ "$RANKS" = 1 ] && ranks=(--rank_file="$OUT/ranks-$name.csv")
    "${limit[@]}" python run_recbole_streamrec.py "${common[@]}" "$@" "${ranks[@]}" --result_file="$OUT/$name.json" \
        > "$OUT/$name.log" 2>&1
    say "$name finished (exit $?) after $(elapsed) s"
}
for job in $JOBS; do
    case $job in
        tiger) run_job tiger --model=TIGER "${budgeted[@]}" --time_budget="$BUDGET" & ;;
        learned) run_job learned "${stream[@]}" "${from_pt[@]}" "${sft_rl[@]}" --checkpoint_tag=learned & ;;
        constant) run_job constant "${stream[@]}" "${from_pt[@]}" "${sft_rl[@]}" --reasoning_trace=constant \
                      --checkpoint_tag=constant & ;;
        none) run_job none "${stream[@]}" "${from_pt[@]}" "${sft_rl[@]}" --reasoning_steps=0 --checkpoint_tag=none & ;;
        pure_rl) run_job pure_rl "${stages[@]}" "${from_pt[@]}" "${only_rl[@]}" --rl_time_budget=$((SFT + RL)) \
                     --checkpoint_tag=pure_rl & ;;
        tiger_es)  # as configured, to early stopping; with a DEADLINE stopped early enough to be tested in time
            es=()
            [ "$DEADLINE" -gt 0 ] && es=(--time_budget=$((DEADLINE - $(elapsed) - RESERVE / 2)))
            run_job tiger_es --model=TIGER "${es[@]}" --checkpoint_tag=es & ;;
        *) say "unknown job $job (tiger, learned, constant, none, pure_rl, tiger_es)" ;;
    esac
done
wait

for job in $JOBS; do
    [ -f "$OUT/$job.log" ] && grep -h "time budget spent\|stage .*: [0-9]*s of training\|test result\|Error" \
        "$OUT/$job.log" | sed "s/^/[$job] /" | cut -c1-240
done
names=() results=()
for job in tiger learned constant none pure_rl tiger_es; do
    [ -f "$OUT/$job.json" ] && { names+=("$job"); results+=("$OUT/$job.json"); }
done
if [ ${#results[@]} -gt 0 ]; then
    python bench/collect_results.py --dataset "$DATASET" --names "$(IFS=,; echo "${names[*]}")" \
        --label "Equal training time: $BUDGET s of training a budgeted job (STREAM-Rec: PT $PT s, SFT $SFT s, RL $RL s), batch $BATCH, lr $LR, the decay ending with the budget; tiger_es (if run): the configured recipe to early stopping or the deadline.${FROM_PT:+ constant, none and pure_rl (if run) from the stage 1 of $FROM_PT.}" \
        "${results[@]}" > "$OUT/table.md" && cat "$OUT/table.md"
fi
say "done after $(elapsed) s"
