"""Where does a run lose between the validation and the test split? NDCG@10 of both splits, by user group.

    python bench/split_breakdown.py --inter DATA/ds/ds.inter NAME=VALID.csv,TEST.csv [NAME=…] [--k 10]
        [--metric ndcg|recall] [--out F] [--json F]

Each run gives two rank files of ``run_recbole_streamrec.py`` (``--valid_rank_file`` and ``--rank_file``: one row per
user, the held-out item's rank in the top-K, 0 when absent), or only the test one (``NAME=TEST.csv``: its validation
columns are ``—``). Leave-one-out (SPEC §6) holds out each user's last
two items: the second-to-last is the validation target, the last the test target, and the rest is training data.
From the atomic ``.inter`` file (the interactions in time order per user, as RecBole's ``order: TO`` sorts them)
this script rebuilds that split and groups the users two ways:

- by the target's **training popularity** (its number of interactions in the training part of all users),
  separately for each split's own target;
- by the user's **sequence length** (all interactions; the test history is one item longer than the validation
  one), so that the validation and test columns of a group hold the same users.

For every run and group it reports NDCG@k (``--metric recall``: Recall@k; K of the rank files ≥ k) on both splits
and their ratio, and the group's share of the run's hits. A run whose test/validation ratio is lower than
another's in one group shows where the gap comes from.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table  # noqa: E402
from paired_bootstrap import per_user, read_ranks  # noqa: E402

POPULARITY_EDGES = (0, 3, 10, 30)  # groups [0, 3), [3, 10), [10, 30), [30, ∞) training interactions
LENGTH_EDGES = (5, 6, 7, 9, 13)  # groups 5, 6, 7–8, 9–12, ≥ 13 interactions
SPLITS = ("valid", "test")


def read_atomic(path: str) -> tuple[list[str], list[list[str]]]:
    """An atomic file's field names (without their ``:type``) and its rows."""
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        return [name.split(":")[0] for name in next(reader)], list(reader)


def read_split(path: str) -> dict[str, dict]:
    """``{user: {"valid": item, "test": item, "length": n}}`` and the training popularity of every item, from an
    atomic ``.inter`` file (``user_id``, ``item_id``, ``timestamp`` columns; a one-line error on a bad one)."""
    try:
        header, rows = read_atomic(path)
        u, i, t = header.index("user_id"), header.index("item_id"), header.index("timestamp")
        events: dict[str, list] = defaultdict(list)
        for row in rows:
            events[row[u]].append((float(row[t]), row[i]))
    except (OSError, StopIteration, ValueError, IndexError) as err:
        raise SystemExit(f"error: {path}: not an atomic .inter file with user_id, item_id, timestamp ({err})")
    users, popularity = {}, Counter()
    for user, rows in events.items():
        items = [item for _, item in sorted(rows, key=lambda r: r[0])]  # stable: ties keep the file's order
        if len(items) < 3:
            continue  # RecBole gives such a user no validation or test row
        popularity.update(items[:-2])
        users[user] = {"valid": items[-2], "test": items[-1], "length": len(items)}
    return {"users": users, "popularity": popularity}


def group_label(value: int, edges: tuple[int, ...]) -> str:
    """The group of ``value`` for ascending ``edges`` (first edge: the smallest value expected)."""
    for low, high in zip(edges, edges[1:]):
        if low <= value < high:
            return str(low) if high == low + 1 else f"{low}–{high - 1}"
    return f"≥ {edges[-1]}" if value >= edges[-1] else f"< {edges[0]}"


def breakdown(split: dict, runs: dict[str, tuple[Optional[dict[str, int]], dict[str, int]]], k: int = 10,
              metric: str = "ndcg") -> dict:
    """Per run and group: NDCG@k (or Recall@k) on validation and test, and the group's share of the run's hits;
    per group: its users in each split. A run without validation ranks (``None``) has test numbers only."""
    users = split["users"]
    order = sorted(users)
    labels = {  # grouping → split → each user's group
        "popularity": {s: np.array([group_label(split["popularity"][users[u][s]], POPULARITY_EDGES) for u in order])
                       for s in SPLITS},
        "length": {s: np.array([group_label(users[u]["length"], LENGTH_EDGES) for u in order]) for s in SPLITS},
    }
    out: dict = {"k": k, "metric": metric, "users": len(users), "groups": {}, "runs": {}}
    for by, per_split in labels.items():
        names = sorted(set(per_split["valid"]) | set(per_split["test"]), key=_order)
        out["groups"][by] = {g: {f"{s}_users": int((per_split[s] == g).sum()) for s in SPLITS} for g in names}
    for name, ranks in runs.items():
        present = {s: r for s, r in zip(SPLITS, ranks) if r is not None}
        missing = set().union(*(set(users) ^ set(r) for r in present.values()))
        if missing:
            raise SystemExit(f"error: run {name}: its rank files and the .inter file disagree on "
                             f"{len(missing)} users (e.g. {sorted(missing)[0]})")
        scores = {s: per_user(np.array([r[u] for u in order]), k)[f"{metric}@{k}"] for s, r in present.items()}
        run: dict = {"all": {s: float(v.mean()) for s, v in scores.items()}}
        for by, per_split in labels.items():
            run[by] = {g: {} for g in out["groups"][by]}
            for s, v in scores.items():
                total = v.sum()
                for g, cell in run[by].items():
                    members = per_split[s] == g
                    cell[s] = float(v[members].mean()) if members.any() else 0.0
                    cell[f"{s}_share"] = float(v[members].sum() / total) if total else 0.0
        out["runs"][name] = run
    return out


def _order(label: str) -> float:
    """Sort key of a group label: its lower bound."""
    digits = "".join(ch if ch.isdigit() else " " for ch in label).split()
    return float(digits[0]) if digits else 0.0


def _ratio(valid: Optional[float], test: Optional[float]) -> str:
    return f"{test / valid:.2f}" if valid and test is not None else "—"


def _cell(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def markdown(result: dict) -> str:
    """The overall table and one table per grouping (``—``: a run without validation ranks)."""
    k, runs = result["k"], result["runs"]
    label = {"ndcg": "NDCG", "recall": "Recall"}[result.get("metric", "ndcg")]
    short = label[0]
    lines = [f"Users: {result['users']}. {label}@{k} of each split; test/valid is their ratio.", ""]
    lines.append(markdown_table(["run", f"valid {short}@{k}", f"test {short}@{k}", "test/valid"],
                                [[n, _cell(r["all"].get("valid")), _cell(r["all"]["test"]),
                                  _ratio(r["all"].get("valid"), r["all"]["test"])] for n, r in runs.items()], "lrrr"))
    titles = {"popularity": "By the target's training popularity (interactions in the training part; each split's "
                            "own target, so a user can sit in a different group for each split)",
              "length": "By the user's sequence length (the same users in both columns)"}
    for by, title in titles.items():
        lines += ["", f"{title}:", ""]
        header = ["group", "users (valid / test)"]
        for n in runs:
            header += [f"{n} valid", f"{n} test", f"{n} test/valid", f"{n} share of test hits"]
        rows = []
        for g, sizes in result["groups"][by].items():
            row = [g, f"{sizes['valid_users']} / {sizes['test_users']}"]
            for r in runs.values():
                c = r[by][g]
                row += [_cell(c.get("valid")), _cell(c["test"]), _ratio(c.get("valid"), c["test"]),
                        f"{100 * c['test_share']:.0f}%"]
            rows.append(row)
        lines.append(markdown_table(header, rows, "l" + "r" * (len(header) - 1)))
    return "\n".join(lines) + "\n"


def parse_run(text: str) -> tuple[str, Optional[str], str]:
    """``NAME=VALID.csv,TEST.csv`` (or ``NAME=TEST.csv``: test only) → name, validation file or None, test file;
    a one-line error otherwise."""
    name, _, files = text.partition("=")
    paths = files.split(",")
    if not name or len(paths) not in (1, 2) or not all(paths):
        raise SystemExit(f"error: {text!r}: expected NAME=VALID_RANKS.csv,TEST_RANKS.csv or NAME=TEST_RANKS.csv")
    return (name, None, paths[0]) if len(paths) == 1 else (name, paths[0], paths[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=VALID_RANKS.csv,TEST_RANKS.csv, one per run")
    parser.add_argument("--inter", required=True, help="the dataset's atomic .inter file")
    parser.add_argument("--k", type=int, default=10, help="the cut-off k (default 10)")
    parser.add_argument("--metric", choices=("ndcg", "recall"), default="ndcg", help="NDCG@k (default) or Recall@k")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    runs = {}
    for text in args.runs:
        name, valid, test = parse_run(text)
        runs[name] = (read_ranks(valid) if valid else None, read_ranks(test))
    result = breakdown(read_split(args.inter), runs, args.k, args.metric)
    text = markdown(result)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
