"""The README's results block: each ``bench/table2.py`` folder's test metrics beside the paper's Table 2.

    python bench/readme_tables.py docs/results/amazon2023-instruments-reduced docs/results/amazon2018-scientific-reduced
    python bench/readme_tables.py --check      # exit 1 if README.md differs from what the folders give

The block sits between ``<!-- table2:begin -->`` and ``<!-- table2:end -->`` in README.md and is rebuilt
from each folder's ``table.csv`` (our numbers), ``bench.json`` (dataset, command) and the paper's numbers in
``_common.PAPER_TABLE2``, so no figure in it is typed by hand. ``--check`` re-reads the folders named in
the block itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PAPER_COLUMN, PAPER_TABLE2, ROOT, fmt_number, fmt_seconds, markdown_table, replace_marked_block,
)

BEGIN, END = "<!-- table2:begin -->", "<!-- table2:end -->"
FOLDER_LINE = re.compile(r"^<!-- table2:folder (\S+) -->$", re.M)


def folder_block(folder: Path) -> str:
    """One dataset's table: our R@10 / N@10 next to the paper's, plus what was run and where it differs."""
    rel = Path(os.path.relpath(folder.resolve(), ROOT)).as_posix()
    for name in ("table.csv", "bench.json", "table.md"):
        if not (folder / name).is_file():
            sys.exit(f"{folder / name} is missing: run bench/table2.py --out {rel} (or --report_only) first")
    meta = json.loads((folder / "bench.json").read_text())
    dataset = meta["settings"]["dataset"]
    column, note = PAPER_COLUMN.get(dataset, (None, "no paper column for this dataset"))
    paper = PAPER_TABLE2.get(column or "", {})
    label = next((line.strip("*") for line in (folder / "table.md").read_text().splitlines()
                  if line.startswith("**")), None)
    body = []
    with (folder / "table.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            ours = [float(row[m]) if row.get(m) else None for m in ("recall@10", "ndcg@10")]
            theirs = paper.get(row.get("key") or "", (None,) * 4)
            seconds = float(row["train_seconds"]) if row.get("train_seconds") else None
            body.append([row["model"], *(fmt_number(v) for v in ours), fmt_number(theirs[1]), fmt_number(theirs[3]),
                         train_time(row, seconds)])
    header = ["model", "R@10 (ours)", "N@10 (ours)", f"R@10 paper ({column or '—'})", f"N@10 paper ({column or '—'})",
              "train time"]
    return "\n".join([
        f"<!-- table2:folder {rel} -->",
        f"#### `{dataset}` — [`{rel}/table.md`]({rel}/table.md)", "",
        *([f"**{label}**", ""] if label else []),
        f"Command: `{meta['command']}`", "",
        markdown_table(header, body, "lrrrrr"), "",
        f"Paper column: {column} — {note}." if column else f"Paper column: none — {note}.",
    ])


def train_time(row: dict[str, str], seconds: float | None) -> str:
    if row.get("status") != "ok":
        return row.get("status") or "—"
    if seconds is None and (row.get("key") or "").startswith("STREAMRec-"):
        return "see RL row"  # PT, SFT and RL are one run
    return fmt_seconds(seconds)


def block(folders: list[Path]) -> str:
    parts = [BEGIN, "<!-- made by bench/readme_tables.py: edit the folders or the script, not this block -->"]
    for folder in folders:
        parts += ["", folder_block(folder)]
    return "\n".join(parts + ["", END])


def current_folders(readme: str) -> list[Path]:
    inside = readme.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in readme else ""
    return [ROOT / p for p in FOLDER_LINE.findall(inside)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="bench/table2.py output folders (default: the README's)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when README.md is out of date")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    folders = args.folders or current_folders(readme)
    updated = replace_marked_block(readme, BEGIN, END, block(folders), args.readme)
    if args.check:
        if updated != readme:
            print(f"{args.readme} is out of date: run python bench/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    print(f"wrote the results of {len(folders)} folder(s) into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
