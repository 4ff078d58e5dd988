# Rebuilds table.md from the committed result files (repository root): bash docs/results/amazon2018-scientific-cpu/equal-time/make_table.sh
O=docs/results/amazon2018-scientific-cpu/equal-time
python bench/collect_results.py --dataset amazon2018-scientific --names tiger,learned,constant \
    --label "Reduced, equal training time: 1,200 s of training a job on a 2-core AVX2 CPU (one thread a job), CPU-preset T5, batch 256, lr 1e-3, the decay ending with the budget. STREAM-Rec: PT 720 s, SFT 360 s, GRPO 120 s; the constant trace starts from the learned run's pretraining (the same configuration), so its train time leaves out those 720 s of PT (and their evaluation). Far from convergence." \
    $O/tiger.json $O/learned.json $O/constant.json > $O/table.md
