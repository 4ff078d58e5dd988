#!/usr/bin/env bash
# GRPO again from an equal-time run's SFT model, with and without the thinking-likelihood reward (issue 12, point 3).
#
#   bash bench/grpo_rewards.sh RUN_DIR [DATA_PATH]
#
# RUN_DIR is a bench/equal_budget.sh folder whose `learned` job left its checkpoints in saved/
# (saved/STREAMRec-<DATASET>-<TAG>-sft.pth and -pi_ref.pth) and its SFT rank file (RUN_DIR/ranks-learned-sft.csv,
# from bench/equal_budget_paired.sh). Two GRPO runs from that SFT model, side by side, one thread each, with the
# settings of the committed equal-time runs (CPU-preset T5, batch 256; GRPO at its own constant rl_learning_rate):
#   paper                    the paper's five rewards
#   no-thinking-likelihood   the same with reward_thinking_likelihood_weight 0
# then a paired bootstrap of both against the SFT model. Writes RUN_DIR/<SUBDIR>/: <name>.log, <name>.json,
# ranks-<name>.csv, paired.md, paired.json.
#
# Environment (defaults in brackets): DATASET [amazon2018-scientific]; SEED [2020], the run's seed (it is in the
# semantic-ID cache key, so evaluation needs the run's own); RL_BUDGET [240] seconds of GRPO training; TAG [learned];
# SUBDIR [grpo-rewards] the output folder inside RUN_DIR (another budget: another folder).
set -uo pipefail

RUN=${1:?usage: bash bench/grpo_rewards.sh RUN_DIR [DATA_PATH]}
DATA=${2:-../shared/data}
DATASET=${DATASET:-amazon2018-scientific}
SEED=${SEED:-2020}
RL_BUDGET=${RL_BUDGET:-240}
TAG=${TAG:-learned}
SUBDIR=${SUBDIR:-grpo-rewards}
RUN=$(cd "$RUN" && pwd)
G=$RUN/$SUBDIR
mkdir -p "$G"
cd "$(dirname "$0")/.."
S=saved/STREAMRec-$DATASET-$TAG
for f in "$S-sft.pth" "$S-pi_ref.pth" "$RUN/ranks-learned-sft.csv"; do
    [ -f "$f" ] || { echo "bench/grpo_rewards.sh: missing $f (run bench/equal_budget.sh and equal_budget_paired.sh first)" >&2; exit 2; }
done

common=(--model=STREAMRec --dataset="$DATASET" --data_path="$DATA" --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --progress_interval=60 --threads=1 --seed="$SEED"
        --train_batch_size=256 --learning_rate=0.003 --lr_decay_horizon=budget --eval_step=1000
        --rl_steps_per_epoch=50 --rl_time_budget="$RL_BUDGET" "--stages=[rl]"
        --init_checkpoint="$S-sft.pth" --reference_checkpoint="$S-pi_ref.pth")
run() {  # name, then its own arguments
    local name=$1; shift
    OMP_NUM_THREADS=1 python run_recbole_streamrec.py "${common[@]}" "$@" --checkpoint_tag="$SUBDIR-$name" \
        --rank_file="$G/ranks-$name.csv" --result_file="$G/$name.json" > "$G/$name.log" 2>&1
    echo "[grpo_rewards] $name finished (exit $?)"
}
run paper &
run no-thinking-likelihood --reward_thinking_likelihood_weight=0 &
wait
python bench/paired_bootstrap.py "$RUN/ranks-learned-sft.csv" "$G/ranks-paper.csv" "$G/ranks-no-thinking-likelihood.csv" \
    --names "learned SFT,GRPO (paper rewards),GRPO (no thinking likelihood)" --by_rank --out "$G/paired.md" --json "$G/paired.json"
