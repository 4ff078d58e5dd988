#!/bin/bash
# The TIGER of ../ (checkpoint_tag gap) evaluated with a popularity penalty a at beam width 50; a is chosen on
# validation. Run from the repository root.
set -euo pipefail
OUT=docs/results/tiger-valid-test-gap/popularity-penalty
D=${DATA_PATH:-../shared/data}
for a in ${ALPHAS:-0.0 0.1 0.2 0.3 0.5 0.8}; do
  python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=$D \
      --config_files=properties/cpu.yaml --checkpoint_tag=gap --lr_decay_epochs=40 --epochs=40 --eval_only \
      --beam_size=50 --popularity_penalty=$a --compare_with_pop=False \
      --valid_rank_file=$OUT/ranks-a$a-valid.csv --rank_file=$OUT/ranks-a$a-test.csv \
      --result_file=$OUT/a$a.json > $OUT/a$a.log 2>&1
  echo "a=$a done $(date +%T)"
done
