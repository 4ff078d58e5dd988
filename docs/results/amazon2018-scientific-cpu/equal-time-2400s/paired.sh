# The SFT models' rank files and the paired comparisons of this folder (bench/equal_budget_paired.sh; it keeps rank
# files that exist, so with the committed ones it only compares). Needs the runs' checkpoints in saved/ (README.md
# here). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-2400s/paired.sh
DATASET=amazon2018-scientific CONFIG_FILES=properties/cpu.yaml EVAL_BATCH=512 \
    bash bench/equal_budget_paired.sh docs/results/amazon2018-scientific-cpu/equal-time-2400s ../shared/data
