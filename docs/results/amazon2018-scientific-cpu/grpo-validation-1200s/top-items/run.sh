#!/bin/bash
# The test top-10 lists of the SFT and GRPO models of ../ (checkpoints in saved/ from ../run.sh), then what takes
# rank 1. Run from the repository root. RUN_DIR: another folder whose learned job left the checkpoints (its files
# go to RUN_DIR/top-items/).
set -euo pipefail
O=${RUN_DIR:-docs/results/amazon2018-scientific-cpu/grpo-validation-1200s}
D=${DATA_PATH:-../shared/data}
for st in sft rl; do
  python bench/top_items.py --items_file=$O/top-items/top10-$st.csv --model=STREAMRec --dataset=amazon2018-scientific \
      --data_path=$D --config_files=properties/cpu.yaml --eval_batch_size=512 --compare_with_pop=False \
      --checkpoint_tag=learned --seed=${SEED:-2023} --eval_only "--stages=[$st]" --rank_file=$O/top-items/ranks-$st.csv \
      > $O/top-items/$st.log 2>&1
done
python bench/top_items.py --summary --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    SFT=$O/top-items/top10-sft.csv,$O/top-items/ranks-sft.csv GRPO=$O/top-items/top10-rl.csv,$O/top-items/ranks-rl.csv \
    > $O/top-items/summary.md
