# Each saved model of this folder's runs, evaluated again with --rank_file (each test user's rank of the held-out
# item), then compared user by user with bench/paired_bootstrap.py. Needs the runs' checkpoints in saved/ (the
# commands of README.md make them). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time/paired.sh      (EXTRA="--threads=1": beside another job)
# A rank file that exists is kept (the runs started with --rank_file wrote their last stage's).
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time
common=(--dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --eval_only ${EXTRA:-})
evaluate() {  # name, then the run's own arguments
    local name=$1; shift
    [ -f "$O/ranks-$name.csv" ] && { echo "ranks-$name.csv exists"; return; }
    python run_recbole_streamrec.py "${common[@]}" "$@" --rank_file="$O/ranks-$name.csv" \
        --result_file="$O/eval-only/$name.json" > "$O/eval-only/$name.log" 2>&1
    echo "$name: $(grep -o "test result.*" "$O/eval-only/$name.log" | cut -c1-160)"
}
mkdir -p "$O/eval-only"
evaluate tiger --model=TIGER
# constant2: the constant trace again, its annotation off the training clock (constant-unclocked.json)
for job in learned constant none constant2; do
    args=(--model=STREAMRec --checkpoint_tag=$job)
    [[ $job = constant* ]] && args+=(--reasoning_trace=constant)
    [ $job = none ] && args+=(--reasoning_steps=0)
    evaluate $job-sft "${args[@]}" "--stages=[sft]"
    evaluate $job-rl "${args[@]}" "--stages=[rl]"
done
compare() { local out=$1 names=$2; shift 2
    python bench/paired_bootstrap.py "$@" --names "$names" --by_rank --out $O/$out.md --json $O/$out.json; }
compare paired-vs-tiger "TIGER,STREAM-Rec SFT (learned),STREAM-Rec SFT (constant),STREAM-Rec SFT (none)" \
    $O/ranks-tiger.csv $O/ranks-{learned,constant,none}-sft.csv
compare paired-vs-constant "constant SFT,learned SFT,no-trace SFT" $O/ranks-{constant,learned,none}-sft.csv
compare paired-vs-constant-unclocked "constant SFT (annotation off the clock),no-trace SFT" $O/ranks-{constant2,none}-sft.csv
for job in learned constant none; do  # GRPO against the SFT model it started from
    compare paired-rl-vs-sft-$job "$job SFT,$job GRPO" $O/ranks-$job-sft.csv $O/ranks-$job-rl.csv
done
# pure RL (GRPO straight after pretraining, pure-rl.json) against SFT → GRPO
compare paired-pure-rl "SFT → GRPO (learned),pure RL" $O/ranks-learned-rl.csv $O/ranks-purerl-rl.csv
# GRPO with trie rollouts and with exact match alone (grpo-rewards/run.sh) against the SFT model and the paper's GRPO
G=$O/grpo-rewards
compare grpo-rewards/paired-none "no-trace SFT,GRPO (paper: level rollouts),GRPO (trie rollouts),GRPO (trie; exact match only)" \
    $O/ranks-none-sft.csv $O/ranks-none-rl.csv $G/ranks-trie.csv $G/ranks-exact.csv
for job in learned constant; do
    compare grpo-rewards/paired-$job "$job SFT,GRPO (paper: level rollouts),GRPO (trie rollouts)" \
        $O/ranks-$job-sft.csv $O/ranks-$job-rl.csv $G/ranks-trie-$job.csv
done
