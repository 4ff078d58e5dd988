"""Accuracy against the number of reasoning tokens at inference, from ``--eval_only`` result files.

    python bench/plot_steps.py --dataset amazon2018-scientific --out steps.png 0=l0.json 1=l1.json 4=l4.json

Each ``L=FILE`` is a ``run_recbole_streamrec.py --eval_only --inference_reasoning_steps=L --result_file=FILE``
result of one checkpoint; the plot (test NDCG@10 and Recall@10 against L) is :func:`ablations.plot`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import METRICS, plot  # noqa: E402


def main(argv: list[str] | None = None) -> dict[int, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("results", nargs="+", help="L=FILE pairs")
    args = parser.parse_args(argv)
    curve = {}
    for pair in args.results:
        steps, _, path = pair.partition("=")
        if not steps.isdigit() or not path:
            parser.error(f"expected L=FILE, got {pair!r}")
        test = json.loads(Path(path).read_text())["test_result"]
        curve[int(steps)] = {m: float(test[m]) for m in METRICS}
    plot(curve, args.out, args.dataset)
    return curve


if __name__ == "__main__":
    main()
