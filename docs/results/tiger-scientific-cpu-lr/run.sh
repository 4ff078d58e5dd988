#!/usr/bin/env bash
# TIGER with the CPU preset (properties/cpu.yaml) on amazon2018-scientific, to early stopping, at another learning
# rate than the preset's 1e-3 (docs/results/tiger-scientific-cpu-cosine80/ is the 1e-3 run): the learning-rate grid
# of bench/table2.py, one run per call. Run from the repository root; about 1 h an lr on 2 cores.
#   bash docs/results/tiger-scientific-cpu-lr/run.sh 3e-3
set -euo pipefail
LR=${1:?usage: run.sh LEARNING_RATE}
OUT=docs/results/tiger-scientific-cpu-lr
python run_recbole_streamrec.py --model=TIGER --dataset=amazon2018-scientific --data_path=../shared/data \
    --config_files=properties/cpu.yaml --learning_rate="$LR" --checkpoint_tag="cpu-lr$LR" \
    --result_file=$OUT/result-lr$LR.json --rank_file=$OUT/ranks-test-lr$LR.csv 2>&1 | tee $OUT/run-lr$LR.log
