"""Issue 12 ablations for STREAM-Rec, one command (SPEC §5b; results under ``--out``):

1. traces: learned (annotated) vs one constant trace (``reasoning_trace: constant``) vs no trace (l = 0),
   same stage-1 checkpoint and the same SFT budget;
2. accuracy against the number of reasoning steps at inference, l = 0…8, on the learned-trace SFT model
   (NDCG@10 and Recall@10 on test; ``steps.png``);
3. pure RL ([pretrain, rl]) vs SFT → RL, from the same stage-1 checkpoint.

    python bench/ablations.py --dataset amazon2018-scientific --data_path ../shared/data --out docs/results/ablations
    python bench/ablations.py --dataset tiny --data_path /tmp/data --out /tmp/abl --quick   # smoke run

``--quick`` adds ``properties/quick.yaml`` (its budgets: 5 PT epochs, one SFT epoch, 20 GRPO steps; a labelled
reduced run). The oracle trace (``reasoning_decoding: oracle``: the annotation of the row's own target, which
needs the target) is evaluated on the learned-trace SFT model as an upper bound. Extra ``key=value`` arguments
after ``--extra`` override config keys for every run. Writes ``ablations.json``, ``ablations.md`` and ``steps.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recbole_streamrec.config import parse_overrides  # noqa: E402
from recbole_streamrec.quick_start import run  # noqa: E402

METRICS = ("ndcg@10", "recall@10")


def stage(result: dict, name: str, split: str = "test") -> dict:
    return {m: float(result["stage_results"][name][split][m]) for m in METRICS}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="labelled reduced run: properties/quick.yaml")
    parser.add_argument("--max_steps", type=int, default=8, help="largest l of the inference-steps curve")
    parser.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    files = [str(root / "properties" / "quick.yaml")] if args.quick else None
    base = {"data_path": args.data_path, "checkpoint_dir": str(out / "checkpoints"), "show_progress": False}
    base.update(parse_overrides(args.extra))

    def go(tag: str, eval_only: bool = False, **keys) -> dict:
        return run("STREAMRec", args.dataset, config_file_list=files, eval_only=eval_only,
                   config_dict={**base, "checkpoint_tag": tag, **keys})

    pt = go("abl-pt", stages=["pretrain"])
    pt_file = str(out / "checkpoints" / f"STREAMRec-{args.dataset}-abl-pt-pretrain.pth")
    ref_file = str(out / "checkpoints" / f"STREAMRec-{args.dataset}-abl-pt-pi_ref.pth")
    from_pt = {"init_checkpoint": pt_file, "reference_checkpoint": ref_file}
    results: dict = {"pretrain": stage(pt, "pretrain")}

    traces = {}
    for name, keys in (("learned", {}), ("constant", {"reasoning_trace": "constant"}), ("none", {"reasoning_steps": 0})):
        try:
            traces[name] = stage(go(f"abl-{name}", stages=["sft"], **from_pt, **keys), "sft")
        except Exception as error:  # noqa: BLE001 (a config check that still requires reasoning_steps >= 1)
            traces[name] = {"not run": str(error)}
    oracle = go("abl-learned", eval_only=True, stages=["sft"], reasoning_decoding="oracle")
    traces["oracle (upper bound)"] = {m: float(oracle["test_result"][m]) for m in METRICS}
    results["traces"] = traces

    sft_file = str(out / "checkpoints" / f"STREAMRec-{args.dataset}-abl-learned-sft.pth")
    curve = {}
    for steps in range(args.max_steps + 1):
        r = go("abl-learned", eval_only=True, stages=["sft"], inference_reasoning_steps=steps)  # its -sft.pth
        curve[steps] = {m: float(r["test_result"][m]) for m in METRICS}
    results["inference_steps"] = curve

    results["sft_rl"] = stage(go("abl-sftrl", stages=["rl"], init_checkpoint=sft_file,
                                 reference_checkpoint=ref_file), "rl")
    results["pure_rl"] = stage(go("abl-purerl", stages=["rl"], **from_pt), "rl")
    (out / "ablations.json").write_text(json.dumps(results, indent=2))
    (out / "ablations.md").write_text(markdown(results, args))
    plot(curve, out / "steps.png", args.dataset)
    print(json.dumps(results, indent=2))
    return results


def markdown(results: dict, args) -> str:
    """The three ablations as tables (test split)."""
    def row(name: str, r: dict) -> str:
        if "not run" in r:
            return f"| {name} | not run: {r['not run'][:80]} | |"
        return f"| {name} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} |"

    head = ["| run | test NDCG@10 | test Recall@10 |", "|---|---:|---:|"]
    lines = [f"# STREAM-Rec ablations on {args.dataset}" + (" (reduced: properties/quick.yaml)" if args.quick else ""),
             "", "## Traces (same stage-1 checkpoint, same SFT budget)", "", *head,
             row("stage 1 (PT)", results["pretrain"])]
    lines += [row(name, r) for name, r in results["traces"].items()]
    lines += ["", "## Reasoning tokens at inference (learned-trace SFT model)", "", "| l | test NDCG@10 | test Recall@10 |",
              "|---:|---:|---:|"]
    lines += [f"| {l} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} |" for l, r in results["inference_steps"].items()]
    lines += ["", "## GRPO from SFT vs from stage 1 (pure RL)", "", *head, row("SFT → RL", results["sft_rl"]),
              row("pure RL ([pretrain, rl])", results["pure_rl"])]
    return "\n".join(lines) + "\n"


def plot(curve: dict, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(curve)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m in METRICS:
        ax.plot(steps, [curve[s][m] for s in steps], marker="o", label=m)
    ax.set_xlabel("reasoning tokens at inference (l)")
    ax.set_title(f"STREAM-Rec (SFT) on {dataset}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
