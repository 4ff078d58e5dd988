"""Results of single runs (``run_recbole_streamrec.py --result_file=…``) as one markdown table.

    python bench/collect_results.py --dataset amazon2018-scientific --label "reduced: …" \
        runs/sasrec.json runs/tiger.json runs/streamrec.json > table.md

For a full side-by-side benchmark use ``table2.py``; this turns the JSONs of runs made by hand (each with
its own command, recorded in the table's notes) into the same kind of table, with the paper's N@10 beside.
STREAM-Rec results contribute one row per stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import METRICS, PAPER_COLUMN, fmt_number, machine_info, machine_line, markdown_table, paper_value  # noqa: E402

STAGE_ROW = {"pretrain": "PT", "sft": "SFT", "rl": "RL"}


def rows_of(result: dict) -> list[tuple[str, str, dict, dict]]:
    """``(label, paper row key, test metrics, valid metrics)`` per model, or per stage for STREAM-Rec."""
    if "stage_results" in result:
        return [(f"{result['model']} ({STAGE_ROW[s]})", f"{result['model']}-{STAGE_ROW[s]}", r["test"], r["valid"])
                for s, r in result["stage_results"].items()]
    return [(result["model"], result["model"], result["test_result"], result["valid_result"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="result JSON files")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--label", default="", help="what was reduced, if anything")
    args = parser.parse_args()
    table = []
    for path in args.results:
        for label, key, test, valid in rows_of(json.loads(Path(path).read_text())):
            paper = paper_value(args.dataset, key)
            table.append([label, *(fmt_number(test[m]) for m in METRICS), fmt_number(valid["ndcg@10"]),
                          fmt_number(paper)])
    column, note = PAPER_COLUMN.get(args.dataset, ("—", ""))
    print(f"Dataset: {args.dataset}. {args.label}\n")
    print(markdown_table(["model", "R@5", "R@10", "N@5", "N@10", "valid N@10", f"paper N@10 ({column})"],
                         table, "lrrrrrr"))
    print(f"\nTest split, full ranking, leave-one-out. Paper column: {note}.")
    print(f"Machine: {machine_line(machine_info())}.")


if __name__ == "__main__":
    main()
