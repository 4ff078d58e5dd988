"""Results of single runs (``run_recbole_streamrec.py --result_file=…``) as one markdown table.

A named STREAM-Rec run of several stages gives one row a stage (``name (PT)``, ``name (SFT)``, …); runs with a
training clock (``training_seconds``, e.g. under ``time_budget``) get a column of it beside the wall-clock train
time (training and validation).

    python bench/collect_results.py --dataset amazon2018-scientific --label "reduced: …" \
        runs/sasrec.json runs/tiger.json runs/streamrec.json > table.md

For a full side-by-side benchmark use ``table2.py``; this turns the JSONs of runs made by hand (each with
its own command, recorded in the table's notes) into the same kind of table, with the paper's N@10 beside.
STREAM-Rec results contribute one row per stage. A run started from another's checkpoint (``init_checkpoint``)
names that run's result with ``--after``, so its row's train time is the whole budget:

    python bench/collect_results.py --dataset amazon2018-scientific --names TIGER,STREAM-Rec \
        --after ,tiger-60/result.json tiger-es/result.json sft/result.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    METRICS, PAPER_COLUMN, fmt_number, fmt_seconds, logged_seconds, machine_info, machine_line, markdown_table,
    paper_value,
)

STAGE_ROW = {"pretrain": "PT", "sft": "SFT", "rl": "RL"}


def rows_of(result: dict) -> list[tuple[str, str, dict, dict]]:
    """``(label, paper row key, test metrics, valid metrics)`` per model, or per stage for STREAM-Rec."""
    if result.get("stage_results"):  # an --eval_only run of STREAM-Rec has none: one row
        return [(f"{result['model']} ({STAGE_ROW[s]})", f"{result['model']}-{STAGE_ROW[s]}", r["test"], r["valid"])
                for s, r in result["stage_results"].items()]
    return [(result["model"], result["model"], result["test_result"], result["valid_result"])]


def epoch_seconds(logs: str) -> float:
    """Sum of RecBole's ``training [time: …s`` and ``evaluating [time: …s`` over ``+``-joined run logs (a run
    and its ``--resume`` continuations)."""
    return sum(logged_seconds(Path(log).read_text()) for log in logs.split("+"))


def per_result(parser: argparse.ArgumentParser, option: str, value: str | None, n: int) -> list:
    """A comma-separated option's values, one per result file (all empty when the option is not given)."""
    if value is None:
        return [""] * n
    values = value.split(",")
    if len(values) != n:
        parser.error(f"{option} has {len(values)} comma-separated values for {n} result files")
    return values


def train_seconds(parser: argparse.ArgumentParser, path: str) -> float:
    """``train_seconds`` of a result file named by ``--after``."""
    seconds = json.loads(Path(path).read_text()).get("train_seconds")
    if seconds is None:
        parser.error(f"--after {path}: the result file has no train_seconds")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="result JSON files")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--label", default="", help="what was reduced, if anything")
    parser.add_argument("--names", default=None, help="comma-separated row labels, one per result file")
    parser.add_argument("--reference", default=None, help="row label whose test N@10 the others are divided by")
    parser.add_argument("--logs", default=None,
                        help="comma-separated run logs, one per result file (empty: none): the train time of a result "
                             "without train_seconds is the sum of its epochs' training and evaluating times; "
                             "join a run's logs with + (a run and its --resume continuations)")
    parser.add_argument("--after", default=None,
                        help="comma-separated result files, one per result (empty: none): the run whose checkpoint "
                             "this one started from (init_checkpoint); its train time is added to this row's, so the "
                             "row shows the whole budget; join several with +")
    args = parser.parse_args(argv)
    n = len(args.results)
    names, logs, after = (per_result(parser, option, value, n) for option, value in
                          (("--names", args.names), ("--logs", args.logs), ("--after", args.after)))
    rows = []
    for path, name, log, before in zip(args.results, names, logs, after):
        result = json.loads(Path(path).read_text())
        seconds = result.get("train_seconds") or (epoch_seconds(log) if log else None)
        if seconds is not None and before:
            seconds += sum(train_seconds(parser, p) for p in before.split("+"))
        stages = rows_of(result)
        for label, key, test, valid in stages:
            if name:  # a named STREAM-Rec run of several stages: one row a stage, "name (SFT)"
                label = f"{name} ({label.rsplit('(', 1)[1]}" if len(stages) > 1 else name
            rows.append((label, key, test, valid, seconds, result.get("training_seconds")))
    ref = next((r[2]["ndcg@10"] for r in rows if r[0] == args.reference), None)
    clocked = any(r[5] is not None for r in rows)  # runs with a training clock (time_budget): its own column
    table = []
    for label, key, test, valid, seconds, training in rows:
        ratio = f"{test['ndcg@10'] / ref:.2f}×" if ref else "—"
        table.append([label, *(fmt_number(test[m]) for m in METRICS), fmt_number(valid["ndcg@10"]), ratio,
                      fmt_seconds(seconds), *([fmt_seconds(training)] if clocked else []),
                      fmt_number(paper_value(args.dataset, key))])
    column, note = PAPER_COLUMN.get(args.dataset, ("—", ""))
    print(f"Dataset: {args.dataset}. {args.label}\n")
    print(markdown_table(["model", "R@5", "R@10", "N@5", "N@10", "valid N@10", f"N@10 / {args.reference or 'ref'}",
                          "train time", *(["of it training (no validation)"] if clocked else []),
                          f"paper N@10 ({column})"], table, "lrrrrrrr" + "r" * clocked + "r"))
    print(f"\nTest split, full ranking, leave-one-out. Paper column: {note}.")
    print(f"Machine: {machine_line(machine_info())}.")


if __name__ == "__main__":
    main()
