"""Validation curves of training runs, read back from their logs, as one markdown table (and a plot).

    python bench/curves.py --at 10,20,30,40,50 --plot curves.png \
        TIGER=docs/results/amazon2018-scientific-cpu/runs/TIGER.log \
        "STREAM-Rec l=1=docs/results/amazon2018-scientific-cpu/scratch-collaborative-l1/run.log"

Each ``LABEL=LOG`` is the log of one ``run_recbole_streamrec.py`` run (TIGER, a STREAM-Rec stage, a baseline).
Every ``epoch N evaluating`` line and the ``valid result`` after it is one point, at the epoch its ``N`` gives
(counted from 1 here): with ``eval_step: 2`` the points are epochs 2, 4, …. Epochs count on across SFT rounds
(whose ``N`` starts again from 0) and ``--resume`` continuations, so pass one stage's log. Columns: the metric
after each epoch of ``--at`` ("—" where the run did not validate that epoch), the best value and its epoch, the
number of epochs, and the training + validation time (RecBole's ``[time: …s]``), so that runs are compared at the
same epoch, not only at their ends.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_number, fmt_seconds, logged_seconds, markdown_table, pyplot  # noqa: E402

POINT = re.compile(r"epoch (\d+) evaluating \[[^\n]*\n[^\n]*valid result: ?\n([^\n]*)")
METRIC = re.compile(r"([\w@]+) : ([0-9.]+)")


def curve(path: Path, metric: str) -> tuple[dict[int, float], float]:
    """({epoch counted from 1: the metric after it}, training + validation seconds) of the log at ``path``.

    A log's ``epoch N`` (from 0) that does not exceed the previous point's starts a new round (an SFT round), whose
    epochs count on after the last one. A log without a validation point, or whose points lack ``metric``, is a
    ``ValueError`` naming it.
    """
    text = path.read_text(errors="replace")
    values: dict[int, float] = {}
    epoch, previous = 0, -1
    for number, line in POINT.findall(text):
        metrics = dict(METRIC.findall(line))
        if metric not in metrics:
            raise ValueError(f"{path}: a validation result without {metric!r} (it has {', '.join(metrics)})")
        n = int(number)
        epoch += n - previous if n > previous else n + 1
        previous = n
        values[epoch] = float(metrics[metric])
    if not values:
        raise ValueError(f"{path}: no 'epoch N evaluating' line followed by 'valid result' (not a training log?)")
    return values, logged_seconds(text)


def table(curves: dict[str, tuple[dict[int, float], float]], at: list[int], metric: str) -> str:
    header = ["run", *(f"valid {metric} ep {e}" for e in at), "best (epoch)", "epochs", "train + valid time"]
    rows = []
    for label, (values, seconds) in curves.items():
        best = max(values, key=values.__getitem__)
        rows.append([label, *(fmt_number(values[e]) if e in values else "—" for e in at),
                     f"{values[best]:.4f} ({best})", str(max(values)), fmt_seconds(seconds)])
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def plot(curves: dict[str, tuple[dict[int, float], float]], path: Path, metric: str) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    for label, (values, _) in curves.items():
        ax.plot(list(values), list(values.values()), label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"valid {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=LOG pairs")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--at", default="10,20,30", help="comma-separated epochs (1-based) to tabulate")
    parser.add_argument("--plot", type=Path, default=None, help="also write the curves to this PNG")
    args = parser.parse_args(argv)
    try:
        at = [int(e) for e in args.at.split(",")]
    except ValueError:
        at = []
    if not at or min(at) < 1:
        parser.error(f"--at: expected comma-separated epochs from 1 on, got {args.at!r}")
    curves = {}
    for pair in args.runs:
        label, sep, log = pair.rpartition("=")
        if not sep or not label or not log:
            parser.error(f"expected LABEL=LOG, got {pair!r}")
        try:
            curves[label] = curve(Path(log), args.metric)
        except (OSError, ValueError) as err:
            sys.exit(f"curves: {err}")
    text = table(curves, at, args.metric) + "\n"
    print(text, end="")
    if args.plot:
        plot(curves, args.plot, args.metric)
    return text


if __name__ == "__main__":
    main()
