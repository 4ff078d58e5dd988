"""Issue 12's three targets across ``bench/equal_budget.sh`` folders: one row a folder (a budget, a seed).

Each folder holds the jobs' result files (``tiger.json``, ``learned.json``, ``constant.json``, ``none.json``) and
the paired comparisons of ``bench/equal_budget_paired.sh`` (``paired-vs-tiger.json``, ``paired-vs-constant.json``,
``paired-rl-vs-sft-learned.json``). The table gives each job's test NDCG@10 (STREAM-Rec's at its SFT and GRPO
models) and, for each target, the paired difference (relative to the baseline, with its bootstrap p) and whether
the target holds:

    SFT ≥ TIGER                   learned SFT − TIGER ≥ 0
    RL ≥ SFT                      learned GRPO − learned SFT ≥ 0
    learned ≥ constant + 5%       (learned SFT − constant SFT) / constant SFT ≥ 5%

A job or comparison a folder lacks is ``—``. Nothing is trained or evaluated here:

    python bench/equal_time_summary.py --run "2400 s, seed 2020" DIR_A --run "2400 s, seed 2021" DIR_B > summary.md

``--readme README.md`` also puts the table between ``<!-- equal-time-summary:begin -->`` and
``<!-- equal-time-summary:end -->`` in that file, so the README's copy is never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_number, markdown_table, replace_marked_block  # noqa: E402

METRIC = "ndcg@10"
# (column, paired file, run name, baseline name, smallest relative difference that meets the target)
TARGETS = [
    ("SFT − TIGER", "paired-vs-tiger.json", "STREAM-Rec SFT (learned)", "TIGER", 0.0),
    ("GRPO − SFT", "paired-rl-vs-sft-learned.json", "learned GRPO", "learned SFT", 0.0),
    ("learned − constant (≥ +5%)", "paired-vs-constant.json", "learned SFT", "constant SFT", 0.05),
]
README_BEGIN, README_END = "<!-- equal-time-summary:begin -->", "<!-- equal-time-summary:end -->"
JOBS = [("TIGER", "tiger", None), ("learned SFT", "learned", "sft"), ("learned GRPO", "learned", "rl"),
        ("constant SFT", "constant", "sft"), ("no trace SFT", "none", "sft")]


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def test_ndcg(folder: Path, job: str, stage: Optional[str]) -> Optional[float]:
    """A job's test NDCG@10: the result's own, or one stage's for STREAM-Rec; None when the job was not run."""
    path = folder / f"{job}.json"
    if not path.is_file():
        return None
    result = read_json(path)
    if stage is None:
        return result["test_result"][METRIC]
    stages = result.get("stage_results") or {}
    if stage not in stages:
        raise SystemExit(f"error: {path}: no stage_results.{stage} (stages: {', '.join(stages) or 'none'})")
    return stages[stage]["test"][METRIC]


def target_cell(folder: Path, paired_file: str, run: str, baseline: str, least: float) -> str:
    """``−14.0% (p < 0.001), not met``; a target met by a difference with p ≥ 0.05 says so (``met, not
    significant``); ``—`` when the folder has no such comparison."""
    path = folder / paired_file
    if not path.is_file():
        return "—"
    rows = [r for r in read_json(path) if r["run"] == run and r["baseline"] == baseline and r["metric"] == METRIC]
    if not rows:
        return "—"
    row = rows[0]
    relative = row["diff"] / row["a"] if row["a"] else 0.0
    p = "p < 0.001" if row["p"] < 0.001 else f"p = {row['p']:.3f}"
    verdict = "met" if relative >= least else "not met"
    if verdict == "met" and row["p"] >= 0.05:
        verdict += ", not significant"
    return f"{relative:+.1%} ({p}), {verdict}".replace("-", "−")


def summary_table(runs: list[tuple[str, Path]]) -> str:
    """The markdown table alone: one row a folder."""
    header = ["run"] + [name for name, _, _ in JOBS] + [column for column, *_ in TARGETS]
    rows = []
    for label, folder in runs:
        values = [fmt_number(test_ndcg(folder, job, stage)) for _, job, stage in JOBS]
        rows.append([label] + values + [target_cell(folder, *target[1:]) for target in TARGETS])
    return markdown_table(header, rows, "l" + "r" * len(JOBS) + "l" * len(TARGETS))


def summary(runs: list[tuple[str, Path]]) -> str:
    return (f"Test NDCG@10 of each job, and issue 12's targets as paired differences over the test users "
            f"(relative to the baseline; bootstrap p from bench/equal_budget_paired.sh).\n\n"
            + summary_table(runs) + "\n")


def replace_readme_block(readme: Path, table: str) -> None:
    """Put ``table`` between the README's summary markers (a file without them is a one-line error)."""
    block = f"{README_BEGIN}\n{table.rstrip()}\n{README_END}"
    readme.write_text(replace_marked_block(readme.read_text(encoding="utf-8"), README_BEGIN, README_END, block, readme),
                      encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=2, action="append", metavar=("LABEL", "DIR"), required=True,
                        help="a row: its label and a bench/equal_budget.sh folder (repeat for more rows)")
    parser.add_argument("--readme", type=Path, default=None,
                        help=f"also replace the table between {README_BEGIN} and {README_END} in this file")
    args = parser.parse_args(argv)
    runs = []
    for label, folder in args.run:
        path = Path(folder)
        if not (path / "tiger.json").is_file() and not (path / "learned.json").is_file():
            parser.error(f"{folder}: neither tiger.json nor learned.json (not a bench/equal_budget.sh folder)")
        runs.append((label, path))
    sys.stdout.write(summary(runs))
    if args.readme is not None:
        replace_readme_block(args.readme, summary_table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
