# Each STREAM-Rec SFT model of lr-3e-3/ evaluated again with --rank_file (the runs' own rank files are their last
# stage's: TIGER, and GRPO for STREAM-Rec), then user-by-user comparisons with bench/paired_bootstrap.py
# (bench/equal_budget_paired.sh; it keeps rank files that exist, so with the committed ones it only compares).
# Needs the runs' checkpoints in saved/ (README.md here). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-lr/paired.sh
DATASET=amazon2018-scientific CONFIG_FILES=properties/cpu.yaml EVAL_BATCH=512 \
    bash bench/equal_budget_paired.sh docs/results/amazon2018-scientific-cpu/equal-time-lr/lr-3e-3 ../shared/data
