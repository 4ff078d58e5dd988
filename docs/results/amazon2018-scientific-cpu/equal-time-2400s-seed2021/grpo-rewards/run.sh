# GRPO again from the seed-2021 learned job's SFT model, 240 s of training, two jobs side by side (one thread
# each): the paper's five rewards, and the same without the thinking-likelihood reward. Needs that run's
# checkpoints in saved/ (../README.md). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-2400s-seed2021/grpo-rewards/run.sh
# (It ran as these commands written out; bench/grpo_rewards.sh now holds them for any equal-time folder.)
SEED=2021 bash bench/grpo_rewards.sh docs/results/amazon2018-scientific-cpu/equal-time-2400s-seed2021 ../shared/data
