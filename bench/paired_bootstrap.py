"""Is run B better than run A on the same test users, or is the difference the test set's sampling error?

    python bench/paired_bootstrap.py A.csv B.csv [C.csv ...] [--names a,b,c] [--k 10] [--samples 10000]

Each file is a ``--rank_file`` of ``run_recbole_streamrec.py`` (one row per test user: the held-out item's rank
in the top-K, 0 when absent; ``recbole_streamrec/user_ranks.py``). Every later file is compared with the first,
user by user: the mean NDCG@k and Recall@k of each, their difference, its 95% interval from a paired bootstrap
over users (the same resampled users for both runs), and the two-sided bootstrap p-value of "no difference".
Prints a Markdown table (``--by_rank``: also each run's number of users at each rank 1..K); ``--out FILE`` also
writes it there and ``--json FILE`` the numbers; ``--split validation`` titles the table for ``--valid_rank_file``
files.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

import numpy as np


def read_ranks(path: str) -> dict[str, int]:
    """``{user: rank}`` from a rank file; a one-line error naming the file on a bad one."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        ranks = {row["user"]: int(row["rank"]) for row in rows}
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise SystemExit(f"error: {path}: not a rank file with columns user,rank ({err})")
    if not ranks:
        raise SystemExit(f"error: {path}: no users")
    return ranks


def per_user(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each user's NDCG@k and Recall@k from the held-out item's rank (0: not in the list)."""
    hit = (ranks >= 1) & (ranks <= k)
    ndcg = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
    return {f"ndcg@{k}": ndcg, f"recall@{k}": hit.astype(float)}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int, seed: int = 0, chunk: int = 500) -> dict[str, float]:
    """Mean of ``b − a`` over users, its 95% percentile interval and two-sided p-value over ``samples`` resamples."""
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, chunk):  # [chunk, users] indices at a time
        n = min(chunk, samples - start)
        means[start : start + n] = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return {"a": float(a.mean()), "b": float(b.mean()), "diff": float(diff.mean()), "low": float(low),
            "high": float(high), "p": float(p)}


def compare(files: list[str], runs: list[dict[str, int]], names: list[str], k: int, samples: int) -> list[dict]:
    """Every later run against the first (``runs``: :func:`read_ranks` of ``files``), a row per run and metric."""
    users = sorted(runs[0])
    for path, run in zip(files[1:], runs[1:]):
        if set(run) != set(users):
            raise SystemExit(f"error: {path}: its users are not those of {files[0]} "
                             f"({len(set(run) ^ set(users))} differ); compare runs on the same split")
    base = per_user(np.array([runs[0][u] for u in users]), k)
    rows = []
    for name, run in zip(names[1:], runs[1:]):
        other = per_user(np.array([run[u] for u in users]), k)
        for metric in base:
            rows.append({"run": name, "baseline": names[0], "metric": metric, "users": len(users),
                         **paired_bootstrap(base[metric], other[metric], samples)})
    return rows


def table(rows: list[dict], samples: int, split: str = "test") -> str:
    lines = [f"Paired bootstrap over {split} users ({samples} resamples); difference = run − baseline.", "",
             "| run | baseline | metric | run | baseline | difference | 95% interval | relative | p |",
             "|---|---|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        rel = f"{r['diff'] / r['a']:+.1%}" if r["a"] else "—"
        lines.append(f"| {r['run']} | {r['baseline']} | {r['metric']} | {r['b']:.4f} | {r['a']:.4f} | "
                     f"{r['diff']:+.4f} | [{r['low']:+.4f}, {r['high']:+.4f}] | {rel} | {r['p']:.3f} |")
    return "\n".join(lines) + "\n"


def by_rank(runs: list[dict[str, int]], names: list[str]) -> str:
    """Markdown: how many users' held-out item sits at each rank 1..K of each run (where a change of NDCG comes from)."""
    k = max(max(run.values()) for run in runs)
    header = "| run | " + " | ".join(str(r) for r in range(1, k + 1)) + " | in the top-K |"
    lines = ["Users whose held-out item is at each rank.", "", header, "|---|" + "---:|" * (k + 1)]
    for name, run in zip(names, runs):
        counts = np.bincount(np.fromiter(run.values(), dtype=int), minlength=k + 1)
        lines.append(f"| {name} | " + " | ".join(str(c) for c in counts[1:]) + f" | {counts[1:].sum()} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="rank files; the first is the baseline")
    parser.add_argument("--names", default=None, help="comma-separated names, one per file (default: the paths)")
    parser.add_argument("--k", type=int, default=10, help="the cut-off of NDCG@k and Recall@k (default 10)")
    parser.add_argument("--samples", type=int, default=10000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--split", default="test",
                        help="the split the rank files are of, for the table's title (default test; validation)")
    parser.add_argument("--by_rank", action="store_true", help="also count each run's users at each rank 1..K")
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    if len(args.files) < 2:
        parser.error("give at least two rank files")
    names = args.names.split(",") if args.names else args.files
    if len(names) != len(args.files):
        parser.error(f"--names has {len(names)} names for {len(args.files)} files")
    runs = [read_ranks(path) for path in args.files]
    rows = compare(args.files, runs, names, args.k, args.samples)
    text = table(rows, args.samples, args.split)
    if args.by_rank:
        text += "\n" + by_rank(runs, names)
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
