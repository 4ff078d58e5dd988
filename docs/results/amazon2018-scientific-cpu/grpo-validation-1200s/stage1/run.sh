#!/bin/bash
# Where the near-constant rank 1 of ../ comes from: its stage 1 (the paper's pretraining, 720 s) against TIGER given
# the same settings for 1,200 s (the equal-time row that ../ lacks) and for 320 s (about as many epochs as stage 1
# gets in 720 s). Same seed, semantic IDs, batch, learning rate and decay-to-the-budget as ../run.sh. Then the test
# top-10 lists of each and what takes rank 1 (bench/top_items.py). Run from the repository root.
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/grpo-validation-1200s/stage1
D=${DATA_PATH:-../shared/data}
SEED=${SEED:-2023}
eb() {  # BUDGET, folder: one TIGER job of bench/equal_budget.sh with ../run.sh's settings
  DATASET=amazon2018-scientific CONFIG_FILES=properties/cpu.yaml BATCH=256 LR=0.003 EVAL_BATCH=512 BUDGET=$1 RANKS=1 \
      JOBS=tiger EXTRA="--seed=$SEED" bash bench/equal_budget.sh $O/$2 $D > $O/$2.console.txt 2>&1
}
common=(--dataset=amazon2018-scientific --data_path=$D --config_files=properties/cpu.yaml --eval_batch_size=512
        --compare_with_pop=False --seed=$SEED)
top() {  # name, then the model's arguments: its test top-10 list and ranks, from its saved checkpoint
  local name=$1; shift
  python bench/top_items.py --items_file=$O/top10-$name.csv --rank_file=$O/ranks-$name.csv "${common[@]}" --eval_only \
      "$@" > $O/top-$name.log 2>&1
}
eb 1200 tiger-1200s && top tiger-1200s --model=TIGER
eb 320 tiger-320s && top tiger-320s --model=TIGER
# stage 1 of ../run.sh's learned job, alone: its 720 s (60% of 1,200 s), the same keys as bench/equal_budget.sh gives it
python run_recbole_streamrec.py "${common[@]}" --model=STREAMRec "--stages=[pretrain]" --checkpoint_tag=stage1 \
    --train_batch_size=256 --learning_rate=0.003 --pt_learning_rate=0.003 --lr_decay_horizon=budget --warmup_steps=100 \
    --eval_step=1000 --pt_time_budget=720 --progress_interval=60 --result_file=$O/pretrain.json > $O/pretrain.log 2>&1
top pretrain --model=STREAMRec "--stages=[pretrain]" --checkpoint_tag=stage1
python bench/top_items.py --summary --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    "TIGER 1200 s=$O/top10-tiger-1200s.csv,$O/ranks-tiger-1200s.csv" \
    "TIGER 320 s=$O/top10-tiger-320s.csv,$O/ranks-tiger-320s.csv" \
    "stage 1 720 s=$O/top10-pretrain.csv,$O/ranks-pretrain.csv" > $O/summary.md
