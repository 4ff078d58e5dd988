# Rebuilds table.md from the committed result files (repository root): bash docs/results/amazon2018-scientific-cpu/equal-budget/make_table.sh
R=docs/results/amazon2018-scientific-cpu; S=$R/scratch-collaborative-l1; H=$R/handover-separator
python bench/collect_results.py --dataset amazon2018-scientific \
    --label "About equal training budget: TIGER to early stopping against STREAM-Rec's SFT started from TIGER's epoch-60 checkpoint (its 51 min counted in), and STREAM-Rec from scratch. Reduced: STREAM-Rec's SFT rows train a fixed 6 epochs (not to early stopping), no GRPO; learning rates not tuned by a grid." \
    --names "TIGER to early stopping,STREAM-Rec (SFT) learned trace 5e-4 separator,STREAM-Rec (SFT) learned trace 5e-4,STREAM-Rec (SFT) learned trace 1e-4 separator,STREAM-Rec (SFT) constant trace 1e-4 separator,STREAM-Rec from scratch collaborative trace l=1,STREAM-Rec from scratch constant trace l=1" \
    --reference "TIGER to early stopping" \
    --after ",$H/tiger-60/result.json,$H/tiger-60/result.json,$H/tiger-60/result.json,$H/tiger-60/result.json,," \
    $S/tiger-same-ids-es/result.json $H/sep-5e-4-6ep/result.json $H/nosep-5e-4-6ep/result.json \
    $H/sep-1e-4-6ep/result.json $H/sep-1e-4-6ep-constant/result.json $S/result.json $S/constant-trace-es/result.json \
    > $R/equal-budget/table.md
