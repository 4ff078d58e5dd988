"""How STREAM-Rec's reasoning tokens are decoded at inference, measured on trained checkpoints (not a test).

    python bench/reasoning_decoding.py --dataset ml-100k --config_files properties/quick.yaml \
        --checkpoints saved/STREAMRec-ml-100k-pretrain.pth,saved/STREAMRec-ml-100k-sft.pth --out docs/results/x

Every checkpoint is evaluated (RecBole's evaluator, valid and test, full ranking) with the stage-1 direct
decoder (as TIGER, no prefix), greedy traces, and ``joint`` decoding at each ``--widths`` (traces kept). Writes
``OUT/decoding.json`` and ``OUT/decoding.md``. The config must be the one the checkpoints were trained with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from time import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    from recbole.utils import init_seed

    from recbole_streamrec.config import config_from_args, parse_overrides
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.trainer.checkpoint import load_checkpoint
    from recbole_streamrec.trainer.recipe import apply_threads
    from recbole_streamrec.utils import get_model, get_trainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", required=True, help="STREAM-Rec checkpoints, comma separated")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="YAML files, comma separated")
    parser.add_argument("--widths", default="4,20", help="joint decoding: traces kept, comma separated")
    parser.add_argument("--out", required=True)
    args, rest = parser.parse_known_args(argv)  # rest: --key=value config overrides, as the run script takes them
    files = args.config_files.split(",") if args.config_files else None
    config = config_from_args("STREAMRec", args.dataset, files, rest)
    init_seed(config["seed"], config["reproducibility"])
    apply_threads(config["threads"])
    _, train, valid, test = load_data(config)
    model = get_model("STREAMRec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "STREAMRec")(config, model)
    modes = [("direct", 0), ("greedy", 1)] + [("joint", int(w)) for w in args.widths.split(",")]
    rows = []
    for path in args.checkpoints.split(","):
        checkpoint = load_checkpoint(path, "cpu")
        model.load_state_dict(checkpoint["state_dict"])
        stage = checkpoint.get("stage") or next((s for s in ("pretrain", "sft", "rl") if f"-{s}" in path), "sft")
        for mode, width in modes:
            model.set_stage(stage)
            model.direct_inference = mode == "direct"
            model.reasoning_decoding = "greedy" if mode == "direct" else mode
            model.reasoning_beam = max(width, 1)
            start = time()
            result = {split: trainer.evaluate(data, load_best_model=False, show_progress=False)
                      for split, data in (("valid", valid), ("test", test))}
            row = {"checkpoint": Path(path).name, "stage": stage, "decoding": mode, "traces": width,
                   "seconds": round(time() - start, 1),
                   **{f"{split}_{metric}": float(result[split][metric]) for split in result
                      for metric in ("ndcg@10", "recall@10")}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {key: config[key] for key in parse_overrides(rest)}
    report = {"dataset": args.dataset, "config_files": files, "overrides": overrides, "rows": rows}
    (out / "decoding.json").write_text(json.dumps(report, indent=2))
    lines = ["| checkpoint | stage | decoding | traces | valid NDCG@10 | valid Recall@10 | test NDCG@10 | test Recall@10 | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        traces = "–" if r["decoding"] == "direct" else r["traces"]
        lines.append(f"| {r['checkpoint']} | {r['stage']} | {r['decoding']} | {traces} | {r['valid_ndcg@10']:.4f} | "
                     f"{r['valid_recall@10']:.4f} | {r['test_ndcg@10']:.4f} | {r['test_recall@10']:.4f} | {r['seconds']} |")
    (out / "decoding.md").write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
