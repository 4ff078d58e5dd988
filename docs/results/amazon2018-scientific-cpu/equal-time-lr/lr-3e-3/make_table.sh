# Rebuilds table.md from the committed result files (repository root): bash docs/results/amazon2018-scientific-cpu/equal-time-lr/lr-3e-3/make_table.sh
O=docs/results/amazon2018-scientific-cpu/equal-time-lr/lr-3e-3
python bench/collect_results.py --dataset amazon2018-scientific --names "tiger,learned,constant,none" \
    --label "Reduced, equal training time at lr 3e-3: 1,200 s of training a job on a 2-core AVX2 CPU (one thread a job, two jobs at a time), CPU-preset T5, batch 256, the decay ending with the budget. STREAM-Rec: PT 720 s, SFT 360 s, GRPO 120 s (GRPO at 1e-5); constant and none start from the learned run's pretraining (the same configuration), so their train time leaves out those 720 s of PT and its evaluation. Far from convergence." \
    $O/tiger.json $O/learned.json $O/constant.json $O/none.json > $O/table.md
