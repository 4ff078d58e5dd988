# Each STREAM-Rec SFT model of lr-3e-3/ evaluated again with --rank_file (the runs' own rank files are their last
# stage's: TIGER, and GRPO for STREAM-Rec), then user-by-user comparisons with bench/paired_bootstrap.py.
# Needs the runs' checkpoints in saved/ (README.md here). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-lr/paired.sh
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time-lr/lr-3e-3
common=(--dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --eval_only --model=STREAMRec "--stages=[sft]" ${EXTRA:-})
evaluate() {  # name, then the run's own arguments
    local name=$1; shift
    [ -f "$O/ranks-$name.csv" ] && { echo "ranks-$name.csv exists"; return; }
    mkdir -p "$O/eval-only"
    python run_recbole_streamrec.py "${common[@]}" "$@" --rank_file="$O/ranks-$name.csv" \
        --result_file="$O/eval-only/$name.json" > "$O/eval-only/$name.log" 2>&1
    echo "$name: $(grep -o "test result.*" "$O/eval-only/$name.log" | cut -c1-160)"
}
evaluate learned-sft --checkpoint_tag=learned
evaluate constant-sft --checkpoint_tag=constant --reasoning_trace=constant
evaluate none-sft --checkpoint_tag=none --reasoning_steps=0
compare() { local out=$1 names=$2; shift 2
    python bench/paired_bootstrap.py "$@" --names "$names" --by_rank --out $O/$out.md --json $O/$out.json; }
compare paired-vs-tiger "TIGER,STREAM-Rec SFT (learned),STREAM-Rec GRPO (learned),SFT (constant),SFT (none)" \
    $O/ranks-tiger.csv $O/ranks-learned-sft.csv $O/ranks-learned.csv $O/ranks-constant-sft.csv $O/ranks-none-sft.csv
compare paired-vs-constant "constant SFT,learned SFT,no-trace SFT" $O/ranks-{constant,learned,none}-sft.csv
for job in learned constant none; do  # GRPO against the SFT model it started from
    compare paired-rl-vs-sft-$job "$job SFT,$job GRPO" $O/ranks-$job-sft.csv $O/ranks-$job.csv
done
