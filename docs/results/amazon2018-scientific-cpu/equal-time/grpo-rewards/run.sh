# GRPO from this folder's SFT models with other rollouts and rewards, 120 s of training each (as the paper-default
# GRPO of ../none.json, ../learned.json, ../constant.json), two jobs at a time, one thread each. From the repository
# root, with the SFT checkpoints of ../README.md's commands in saved/:
#   bash docs/results/amazon2018-scientific-cpu/equal-time/grpo-rewards/run.sh
set -uo pipefail
D=docs/results/amazon2018-scientific-cpu/equal-time/grpo-rewards
common=(--dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml --eval_batch_size=512
  --compare_with_pop=False --progress_interval=60 --threads=1 --model=STREAMRec "--stages=[rl]"
  --rl_time_budget=120 --rl_steps_per_epoch=50 --eval_step=1000 --rl_item_decoding=trie
  --reference_checkpoint=saved/STREAMRec-amazon2018-scientific-learned-pi_ref.pth)
job() {  # name, then its own arguments
    local name=$1; shift
    OMP_NUM_THREADS=1 python run_recbole_streamrec.py "${common[@]}" --checkpoint_tag=grpo-$name "$@" \
        --rank_file=$D/ranks-$name.csv --result_file=$D/$name.json > $D/$name.log 2>&1
}
none=(--reasoning_steps=0 --init_checkpoint=saved/STREAMRec-amazon2018-scientific-none-sft.pth)
# the no-trace SFT model: the paper's rewards with trie rollouts (every rollout a real item: the format reward is
# constant), and exact match alone
job trie "${none[@]}" &
job exact "${none[@]}" --reward_format_weight=0 --reward_similarity_weight=0 --reward_thinking_likelihood_weight=0 \
    --reward_thinking_ranking_weight=0 &
wait
# the learned-trace and constant-trace SFT models, the paper's rewards with trie rollouts
job trie-learned --init_checkpoint=saved/STREAMRec-amazon2018-scientific-learned-sft.pth &
job trie-constant --reasoning_trace=constant --init_checkpoint=saved/STREAMRec-amazon2018-scientific-constant-sft.pth &
wait
