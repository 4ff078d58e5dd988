"""The ``annotation:`` lines of STREAM-Rec run logs as one markdown table (one row per annotation).

    python bench/annotation_table.py docs/results/streamrec-scientific-state-loss/*.log > annotations.md

Every annotation logs its trace statistics (``STREAMRecTrainer`` → ``trace_statistics``); this reads them back,
so a table of them is made by a command, not by hand. The last column says whether the mean ‖t − s_i‖ falls at
every step i = 0…l (issue 12, point 1).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

LINE = re.compile(r"annotation: distinct_tokens (\d+), distinct_traces (\d+), distinct_targets (\d+), "
                  r"distance (\[[^\]]*\]), first_in_target_l01 ([\d.]+), spells_target ([\d.]+)")
HEADER = ("| run | annotation | distinct tokens | distinct traces | distinct targets | first token in target's "
          "level-0/1 codes | spells target | mean ‖t − s_i‖, i = 0…l | falls at every step |")


def rows(path: Path) -> list[str]:
    """One markdown row per ``annotation:`` line of the log at ``path`` (none: ``ValueError`` naming it)."""
    out = []
    for number, match in enumerate(LINE.finditer(path.read_text(errors="replace")), start=1):
        tokens, traces, targets, dist, first, spells = match.groups()
        distance = ast.literal_eval(dist)
        falls = all(a > b for a, b in zip(distance, distance[1:]))
        out.append(f"| {path.stem} | {number} | {tokens} | {traces} | {targets} | {float(first):.4f} | "
                   f"{float(spells):.4f} | {', '.join(f'{d:.2f}' for d in distance)} | {'yes' if falls else 'no'} |")
    if not out:
        raise ValueError(f"{path}: no 'annotation:' line (not a STREAM-Rec SFT log?)")
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        body = [row for path in args.logs for row in rows(path)]
    except (OSError, ValueError) as err:
        sys.exit(f"annotation_table: {err}")
    text = "\n".join([HEADER, "|" + "---|" * HEADER.count(" | ") + "---|", *body]) + "\n"
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
