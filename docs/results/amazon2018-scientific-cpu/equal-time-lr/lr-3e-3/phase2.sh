# The constant trace and no trace from the learned run's pretraining checkpoint and π_ref (the same configuration
# and seed: their stage 1 would be the same 720 s), SFT 360 s and GRPO 120 s each, side by side, one thread each.
# From the repository root, after bench/equal_budget.sh made learned's checkpoints in saved/ (README.md here).
O=docs/results/amazon2018-scientific-cpu/equal-time-lr/lr-3e-3
common=(--dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml
  --eval_batch_size=512 --compare_with_pop=False --progress_interval=60 --threads=1
  --train_batch_size=256 --learning_rate=0.003 --pt_learning_rate=0.003 --sft_learning_rate=0.003
  --lr_decay_horizon=budget --warmup_steps=100 --sft_warmup_steps=50 --eval_step=1000
  --model=STREAMRec --pt_time_budget=720 --sft_time_budget=360 --rl_time_budget=120 --rl_steps_per_epoch=50
  "--stages=[sft,rl]" --init_checkpoint=saved/STREAMRec-amazon2018-scientific-learned-pretrain.pth
  --reference_checkpoint=saved/STREAMRec-amazon2018-scientific-learned-pi_ref.pth)
OMP_NUM_THREADS=1 python run_recbole_streamrec.py "${common[@]}" --reasoning_trace=constant --checkpoint_tag=constant \
  --rank_file=$O/ranks-constant.csv --result_file=$O/constant.json > $O/constant.log 2>&1 &
OMP_NUM_THREADS=1 python run_recbole_streamrec.py "${common[@]}" --reasoning_steps=0 --checkpoint_tag=none \
  --rank_file=$O/ranks-none.csv --result_file=$O/none.json > $O/none.log 2>&1 &
wait
