"""Write each test user's top-10 items of a saved run (what ranks above the held-out item, not only where it is).

    python bench/top_items.py --items_file=top.csv --model=… --checkpoint_tag=… [run options] --eval_only \
        --rank_file=ranks.csv
    python bench/top_items.py --summary --inter DATA/ds/ds.inter NAME=top.csv,ranks.csv [NAME=…]  # rank-1 items

Takes the arguments of ``run_recbole_streamrec.py`` (``--eval_only`` and ``--rank_file`` are required) plus
``--items_file``: a CSV with one row per test user (``user``, ``items``: the top-10 item tokens, best first,
space-separated, after RecBole masks the user's history). RecBole's evaluation collector is told to keep the
top-k item ids (``rec.items``), which it otherwise keeps only for metrics that need them.

``--summary`` reads such files back and prints, per run, the items most often at rank 1: for how many users, for
how many of them it is the held-out item, how often it is a validation and a test target, its training
interactions and its title (from the ``.item`` file beside the ``.inter`` one, when it has a ``title`` field).
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import recbole_streamrec.quick_start as quick_start  # noqa: E402
import run_recbole_streamrec  # noqa: E402
from recbole.evaluator.register import Register  # noqa: E402
from recbole_streamrec import user_ranks  # noqa: E402


def write_items(path: str, test_data, items) -> int:
    """``user,items`` rows for the users of ``test_data`` (its row order, as ``write_ranks``); returns the rows."""
    dataset = test_data._dataset
    users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
    tokens = dataset.id2token(dataset.iid_field, items[:, :10].cpu().numpy())
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "items"])
        writer.writerows((user, " ".join(row)) for user, row in zip(users.tolist(), tokens.tolist()))
    return len(users)


def summary(inter: str, runs: list[str], top: int = 3) -> str:
    """Markdown: each run's ``top`` most frequent rank-1 items (``runs``: ``NAME=ITEMS.csv,RANKS.csv``)."""
    from paired_bootstrap import read_ranks
    from split_breakdown import read_atomic, read_split

    split = read_split(inter)
    users, popularity = split["users"], split["popularity"]
    valid_targets = Counter(u["valid"] for u in users.values())
    test_targets = Counter(u["test"] for u in users.values())
    titles: dict[str, str] = {}
    item_file = Path(inter).with_suffix(".item")
    if item_file.is_file():
        header, rows = read_atomic(str(item_file))
        if "title" in header:
            t = header.index("title")
            titles = {row[0]: row[t][:60] for row in rows if len(row) > t}
    lines = ["| run | rank-1 item | users with it at rank 1 | of them, their test item | valid targets | "
             "test targets | training interactions | title |", "|---|---|---:|---:|---:|---:|---:|---|"]
    distinct = []
    for text in runs:
        name, _, files = text.partition("=")
        items_path, ranks_path = files.split(",")
        with open(items_path, newline="") as f:
            first = {row["user"]: row["items"].split()[0] for row in csv.DictReader(f)}
        rank = read_ranks(ranks_path)
        counts = Counter(first.values())
        distinct.append(f"{name} {len(counts)}")
        for item, n in counts.most_common(top):
            hit = sum(1 for u, i in first.items() if i == item and rank[u] == 1)
            lines.append(f"| {name} | {item} | {n} | {hit} | {valid_targets[item]} | {test_targets[item]} | "
                         f"{popularity[item]} | {titles.get(item, '')} |")
    head = f"Users: {len(users)}. Distinct rank-1 items: {', '.join(distinct)}."
    return head + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--summary"]:
        inter = [a.split("=", 1)[1] for a in argv if a.startswith("--inter=")]
        if "--inter" in argv:
            inter.append(argv[argv.index("--inter") + 1])
        runs = [a for a in argv[1:] if "=" in a and not a.startswith("--")]
        if not inter or not runs:
            print("error: --summary needs --inter FILE and NAME=ITEMS.csv,RANKS.csv", file=sys.stderr)
            return 2
        sys.stdout.write(summary(inter[0], runs))
        return 0
    out = [a.split("=", 1)[1] for a in argv if a.startswith("--items_file=")]
    argv = [a for a in argv if not a.startswith("--items_file=")]
    if not out or "--eval_only" not in argv or not any(a.startswith("--rank_file=") for a in argv):
        print("error: bench/top_items.py needs --items_file=PATH, --eval_only and --rank_file=PATH", file=sys.stderr)
        return 2
    rank_file = [a.split("=", 1)[1] for a in argv if a.startswith("--rank_file=")][0]
    sys.argv = [sys.argv[0], *argv]  # RecBole's Config reads the overrides from sys.argv
    kept = {}
    recorder_evaluate, write_ranks = user_ranks.TopkRecorder.evaluate, quick_start.write_ranks

    def evaluate(self, struct):
        kept["items"] = struct.get("rec.items").clone()  # [users, K] item ids, best first
        return recorder_evaluate(self, struct)

    def write_both(path, data, topk):
        if path == rank_file:  # the test split's rank file: the recorder holds the test evaluation
            write_items(out[0], data, kept["items"])
        return write_ranks(path, data, topk)

    need = Register.need
    user_ranks.TopkRecorder.evaluate, quick_start.write_ranks = evaluate, write_both
    Register.need = lambda self, key: key == "rec.items" or need(self, key)
    try:
        return run_recbole_streamrec.main(argv)
    finally:
        user_ranks.TopkRecorder.evaluate, quick_start.write_ranks = recorder_evaluate, write_ranks
        Register.need = need


if __name__ == "__main__":
    sys.exit(main())
