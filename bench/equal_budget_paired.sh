#!/usr/bin/env bash
# User-by-user comparisons of the jobs of one bench/equal_budget.sh folder (run with RANKS=1), with
# bench/paired_bootstrap.py (10,000 paired bootstrap resamples of the test users).
#
#   bash bench/equal_budget_paired.sh OUT_DIR [DATA_PATH]
#
# A job's own ranks-<job>.csv is its last stage (TIGER; GRPO for STREAM-Rec). Each STREAM-Rec job of OUT_DIR
# (learned, constant, none: those with a <job>.json) is first evaluated again at its SFT model (--eval_only
# --stages=[sft], its checkpoints in saved/ from that run), writing ranks-<job>-sft.csv and eval-only/<job>-sft.*;
# a rank file that exists is kept. Then, for the jobs present:
#   paired-vs-tiger.md       TIGER against each SFT model and the learned GRPO model
#   paired-vs-constant.md    the constant trace's SFT model against the learned trace's and no trace's
#   paired-rl-vs-sft-<job>.md  GRPO against the SFT model it started from
#   paired-pure-rl.md        pure RL (the pure_rl job: GRPO straight after stage 1) against SFT → RL (the learned
#                            job's GRPO model), where ranks-pure_rl.csv is there
# (and .json beside each). Give the settings the runs had: DATASET [amazon2023-instruments], CONFIG_FILES [none],
# EVAL_BATCH [4096], EXTRA [e.g. --threads=1 beside another job].
set -euo pipefail

O=${1:?usage: bash bench/equal_budget_paired.sh OUT_DIR [DATA_PATH]}
DATA=${2:-../shared/data}
DATASET=${DATASET:-amazon2023-instruments}
EVAL_BATCH=${EVAL_BATCH:-4096}
[ -d "$O" ] || { echo "error: $O: no such folder"; exit 2; }
O=$(cd "$O" && pwd)
cd "$(dirname "$0")/.."
files=()
[ -n "${CONFIG_FILES:-}" ] && files=(--config_files="$CONFIG_FILES")
common=(--dataset="$DATASET" --data_path="$DATA" "${files[@]}" --eval_batch_size="$EVAL_BATCH"
        --compare_with_pop=False --eval_only --model=STREAMRec "--stages=[sft]" ${EXTRA:-})

jobs=()
for job in learned constant none; do [ -f "$O/$job.json" ] && jobs+=("$job"); done
for job in "${jobs[@]}"; do  # the SFT model of each STREAM-Rec job
    name=$job-sft
    if [ -f "$O/ranks-$name.csv" ]; then echo "ranks-$name.csv exists"; continue; fi
    args=(--checkpoint_tag="$job")
    [ "$job" = constant ] && args+=(--reasoning_trace=constant)
    [ "$job" = none ] && args+=(--reasoning_steps=0)
    mkdir -p "$O/eval-only"
    python run_recbole_streamrec.py "${common[@]}" "${args[@]}" --rank_file="$O/ranks-$name.csv" \
        --result_file="$O/eval-only/$name.json" > "$O/eval-only/$name.log" 2>&1 \
        || { echo "error: evaluating $name failed (see $O/eval-only/$name.log)"; exit 1; }
    echo "$name: $(grep -o "test result.*" "$O/eval-only/$name.log" | cut -c1-160)"
done

has() { [[ " ${jobs[*]} " == *" $1 "* ]]; }
compare() {  # output name, display names, rank files
    local out=$1 names=$2; shift 2
    python bench/paired_bootstrap.py "$@" --names "$names" --by_rank --out "$O/$out.md" --json "$O/$out.json"
}
if [ -f "$O/ranks-tiger.csv" ] && [ ${#jobs[@]} -gt 0 ]; then
    names=TIGER ranks=("$O/ranks-tiger.csv")
    for job in "${jobs[@]}"; do
        if [ "$job" = learned ]; then
            names+=",STREAM-Rec SFT (learned),STREAM-Rec GRPO (learned)"
            ranks+=("$O/ranks-learned-sft.csv" "$O/ranks-learned.csv")
        else
            names+=",SFT ($job)" ranks+=("$O/ranks-$job-sft.csv")
        fi
    done
    compare paired-vs-tiger "$names" "${ranks[@]}"
fi
if has constant && [ ${#jobs[@]} -gt 1 ]; then
    names="constant SFT" ranks=("$O/ranks-constant-sft.csv")
    has learned && { names+=",learned SFT"; ranks+=("$O/ranks-learned-sft.csv"); }
    has none && { names+=",no-trace SFT"; ranks+=("$O/ranks-none-sft.csv"); }
    compare paired-vs-constant "$names" "${ranks[@]}"
fi
for job in "${jobs[@]}"; do
    if [ -f "$O/ranks-$job.csv" ]; then
        compare "paired-rl-vs-sft-$job" "$job SFT,$job GRPO" "$O/ranks-$job-sft.csv" "$O/ranks-$job.csv"
    fi
done
if [ -f "$O/ranks-pure_rl.csv" ] && has learned; then
    compare paired-pure-rl "SFT → GRPO (learned),pure RL" "$O/ranks-learned.csv" "$O/ranks-pure_rl.csv"
fi
