#!/bin/bash
# The test top-10 lists of the learned job's SFT and GRPO models (checkpoints in saved/ from ../run.sh), then what
# takes rank 1. Run from the repository root.
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time-1200s-seed2023/shared-stage1/top-items
D=${DATA_PATH:-../shared/data}
for st in sft rl; do
  python bench/top_items.py --items_file=$O/top10-$st.csv --model=STREAMRec --dataset=amazon2018-scientific \
      --data_path=$D --config_files=properties/cpu.yaml --eval_batch_size=512 --compare_with_pop=False \
      --checkpoint_tag=learned --seed=${SEED:-2023} --eval_only "--stages=[$st]" --rank_file=$O/ranks-$st.csv \
      > $O/$st.log 2>&1
done
python bench/top_items.py --summary --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    SFT=$O/top10-sft.csv,$O/ranks-sft.csv GRPO=$O/top10-rl.csv,$O/ranks-rl.csv > $O/summary.md
