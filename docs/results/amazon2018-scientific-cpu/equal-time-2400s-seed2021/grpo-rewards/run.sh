# GRPO again from the seed-2021 learned job's SFT model, 240 s of training, two jobs side by side (one thread
# each): the paper's five rewards, and the same without the thinking-likelihood reward. Needs that run's
# checkpoints in saved/ (../README.md). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-2400s-seed2021/grpo-rewards/run.sh
G=docs/results/amazon2018-scientific-cpu/equal-time-2400s-seed2021/grpo-rewards
S=saved/STREAMRec-amazon2018-scientific-learned
common=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --progress_interval=60 --threads=1 --seed=2021
        --train_batch_size=256 --learning_rate=0.003 --lr_decay_horizon=budget --eval_step=1000
        --rl_steps_per_epoch=50 --rl_time_budget=240 "--stages=[rl]"
        --init_checkpoint=$S-sft.pth --reference_checkpoint=$S-pi_ref.pth)
run() {  # name, then its own arguments
    local name=$1; shift
    OMP_NUM_THREADS=1 python run_recbole_streamrec.py "${common[@]}" "$@" --checkpoint_tag="grpo-$name" \
        --rank_file="$G/ranks-$name.csv" --result_file="$G/$name.json" > "$G/$name.log" 2>&1
    echo "$name finished (exit $?)"
}
run paper &
run no-thinking-likelihood --reward_thinking_likelihood_weight=0 &
wait
R=docs/results/amazon2018-scientific-cpu/equal-time-2400s-seed2021
python bench/paired_bootstrap.py "$R/ranks-learned-sft.csv" "$G/ranks-paper.csv" "$G/ranks-no-thinking-likelihood.csv" \
    --names "learned SFT,GRPO (paper rewards),GRPO (no thinking likelihood)" --by_rank --out "$G/paired.md" --json "$G/paired.json"
