# The learned-trace SFT model of this folder at l = 0…8 reasoning tokens at inference, and with the oracle trace (the
# annotation of the row's own target: an upper bound), --eval_only; then steps/steps.png and steps/table.md.
# Needs the learned run's checkpoints in saved/ (README.md here). From the repository root, beside another job:
#   EXTRA=--threads=1 bash docs/results/amazon2018-scientific-cpu/equal-time-2400s/steps.sh
set -euo pipefail
O=docs/results/amazon2018-scientific-cpu/equal-time-2400s/steps
mkdir -p "$O"
common=(--model=STREAMRec --dataset=amazon2018-scientific --data_path=../shared/data --config_files=properties/cpu.yaml
        --eval_batch_size=512 --compare_with_pop=False --eval_only "--stages=[sft]" --checkpoint_tag=learned ${EXTRA:-})
pairs=() names=() files=()
for k in 0 1 2 3 4 6 8; do
    python run_recbole_streamrec.py "${common[@]}" --inference_reasoning_steps=$k --result_file=$O/l$k.json > $O/l$k.log 2>&1
    pairs+=("$k=$O/l$k.json") names+=("l=$k") files+=("$O/l$k.json")
done
python run_recbole_streamrec.py "${common[@]}" --reasoning_decoding=oracle --result_file=$O/oracle.json > $O/oracle.log 2>&1
names+=(oracle) files+=("$O/oracle.json")
python bench/plot_steps.py --dataset amazon2018-scientific --out $O/steps.png "${pairs[@]}"
python bench/collect_results.py --dataset amazon2018-scientific --names "$(IFS=,; echo "${names[*]}")" \
    --label "The learned-trace SFT model of equal-time-2400s at l reasoning tokens at inference (trained with l = 4), and the oracle trace" \
    "${files[@]}" > $O/table.md
cat $O/table.md
