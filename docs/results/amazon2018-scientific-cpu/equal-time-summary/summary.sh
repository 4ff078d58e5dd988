# Issue 12's targets over the equal-time folders of amazon2018-scientific (bench/equal_time_summary.py; reads their
# result files and paired comparisons, trains nothing). From the repository root:
#   bash docs/results/amazon2018-scientific-cpu/equal-time-summary/summary.sh
# It also rewrites the copy of the table in README.md (between its equal-time-summary markers).
R=docs/results/amazon2018-scientific-cpu
python bench/equal_time_summary.py --readme README.md \
    --run "1,200 s, seed 2020 (AVX2 CPU, fp32, 1 thread; its own IDs)" "$R/equal-time-lr/lr-3e-3" \
    --run "1,200 s, seed 2023 (2 threads, one job at a time)" "$R/equal-time-1200s-seed2023/shared-stage1" \
    --run "2,400 s, seed 2020" "$R/equal-time-2400s" \
    --run "2,400 s, seed 2021 (IDs rebuilt with the seed)" "$R/equal-time-2400s-seed2021" \
    --run "2,400 s, seed 2022 (IDs rebuilt with the seed)" "$R/equal-time-2400s-seed2022" \
    --run "3,600 s, seed 2020" "$R/equal-time-3600s" \
    > "$R/equal-time-summary/summary.md"
