#!/bin/bash
# Does GRPO raise validation NDCG@10 while it lowers test? One learned STREAM-Rec job of bench/equal_budget.sh
# (1,200 s of training, 2 threads, seed 2023), then its SFT and GRPO models evaluated again with rank files for both
# splits, a paired bootstrap on each split, and the popularity breakdown. Run from the repository root.
set -euo pipefail
OUT=docs/results/amazon2018-scientific-cpu/grpo-validation-1200s
D=${DATA_PATH:-../shared/data}
SEED=${SEED:-2023}
DATASET=amazon2018-scientific CONFIG_FILES=properties/cpu.yaml BATCH=256 LR=0.003 EVAL_BATCH=512 BUDGET=1200 RANKS=1 \
    JOBS=learned EXTRA="--seed=$SEED" bash bench/equal_budget.sh $OUT $D
common=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=$D --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --checkpoint_tag=learned --seed=$SEED --eval_only)
for stage in sft rl; do
  python run_recbole_streamrec.py "${common[@]}" "--stages=[$stage]" --valid_rank_file=$OUT/valid-ranks-$stage.csv \
      --rank_file=$OUT/test-ranks-$stage.csv --result_file=$OUT/eval-$stage.json > $OUT/eval-$stage.log 2>&1
done
python bench/paired_bootstrap.py $OUT/valid-ranks-sft.csv $OUT/valid-ranks-rl.csv --names SFT,GRPO --split validation \
    --by_rank --out $OUT/paired-valid.md --json $OUT/paired-valid.json > /dev/null
python bench/paired_bootstrap.py $OUT/test-ranks-sft.csv $OUT/test-ranks-rl.csv --names SFT,GRPO --by_rank \
    --out $OUT/paired-test.md --json $OUT/paired-test.json > /dev/null
python bench/split_breakdown.py --inter $D/amazon2018-scientific/amazon2018-scientific.inter \
    SFT=$OUT/valid-ranks-sft.csv,$OUT/test-ranks-sft.csv GRPO=$OUT/valid-ranks-rl.csv,$OUT/test-ranks-rl.csv \
    --out $OUT/breakdown.md --json $OUT/breakdown.json > /dev/null
