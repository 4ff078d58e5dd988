# Rebuilds table.md from the committed result files (repository root): bash docs/results/amazon2018-scientific-cpu/equal-time/make_table.sh
O=docs/results/amazon2018-scientific-cpu/equal-time
python bench/collect_results.py --dataset amazon2018-scientific \
    --names "tiger,learned,constant,none,pure RL,constant (annotation off the clock)" \
    --label "Reduced, equal training time: 1,200 s of training a job on a 2-core AVX2 CPU (one thread a job), CPU-preset T5, batch 256, lr 1e-3, the decay ending with the budget. STREAM-Rec: PT 720 s, SFT 360 s, GRPO 120 s; constant, none and pure RL start from the learned run's pretraining (the same configuration), so their train time leaves out those 720 s of PT (and their evaluation); pure RL gives GRPO SFT's 360 s too. The constant run's annotation (101 s) was on its training clock; the later constant run and none spend none of their budget on it. Train times differ by evaluation too: the runs made after the change that reuses each stage's validation and test make 4 fewer evaluations. Far from convergence." \
    $O/tiger.json $O/learned.json $O/constant.json $O/none.json $O/pure-rl.json $O/constant-unclocked.json > $O/table.md
