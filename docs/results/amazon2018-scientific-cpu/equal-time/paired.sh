# Each saved model of this folder's runs, evaluated again with --rank_file (each test user's rank of the held-out
# item), then compared user by user with bench/paired_bootstrap.py. Needs the runs' checkpoints in saved/ (the
# commands of README.md make them). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time/paired.sh      (EXTRA="--threads=1": beside another job)
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
for job in learned constant none; do
    args=(--model=STREAMRec --checkpoint_tag=$job)
    [ $job = constant ] && args+=(--reasoning_trace=constant)
    [ $job = none ] && args+=(--reasoning_steps=0)
    evaluate $job-sft "${args[@]}" "--stages=[sft]"
    evaluate $job-rl "${args[@]}" "--stages=[rl]"
done
python bench/paired_bootstrap.py $O/ranks-tiger.csv $O/ranks-{learned,constant,none}-sft.csv \
    --names "TIGER,STREAM-Rec SFT (learned),STREAM-Rec SFT (constant),STREAM-Rec SFT (none)" \
    --out $O/paired-vs-tiger.md --json $O/paired-vs-tiger.json
python bench/paired_bootstrap.py $O/ranks-constant-sft.csv $O/ranks-{learned,none}-sft.csv \
    --names "constant SFT,learned SFT,no-trace SFT" --out $O/paired-vs-constant.md --json $O/paired-vs-constant.json
for job in learned constant none; do  # GRPO against the SFT model it started from
    python bench/paired_bootstrap.py $O/ranks-$job-sft.csv $O/ranks-$job-rl.csv --names "$job SFT,$job GRPO" \
        --out $O/paired-rl-vs-sft-$job.md --json $O/paired-rl-vs-sft-$job.json
done
# pure RL (GRPO straight after pretraining, pure-rl.json) against SFT → GRPO
[ -f $O/ranks-purerl-rl.csv ] && python bench/paired_bootstrap.py $O/ranks-learned-rl.csv $O/ranks-purerl-rl.csv \
    --names "SFT → GRPO (learned),pure RL" --out $O/paired-pure-rl.md --json $O/paired-pure-rl.json
