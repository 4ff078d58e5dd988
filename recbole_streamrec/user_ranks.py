"""Each user's rank of the held-out item, for paired comparisons of two runs (``--rank_file`` for the test
split, ``--valid_rank_file`` for the validation split).

RecBole reports a metric's mean over the test users. Two models evaluated on the same users can be compared
user by user (``bench/paired_bootstrap.py``), which separates a real difference from the sampling error of one
test set. The file holds one row per user: the user's token and the rank (1-based) of the held-out item in the
model's top-K list, 0 when it is not there (K = the largest ``topk``). Leave-one-out has one held-out item per
user, so NDCG@k of a user is 1 / log2(rank + 1) when 1 ≤ rank ≤ k, Recall@k is 1 then, and both are 0 otherwise.
"""

from __future__ import annotations

import csv
from typing import Any, Optional

import torch
from torch import Tensor

from recbole_streamrec.errors import UserError


class TopkRecorder:
    """Wraps a RecBole evaluator: computes the same metrics and keeps the last evaluation's ``rec.topk``."""

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator
        self.topk: Optional[Tensor] = None  # [users, K + 1]: a hit flag per position, then the user's positives

    def evaluate(self, struct):
        self.topk = struct.get("rec.topk").clone()
        return self.evaluator.evaluate(struct)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.evaluator, name)


def ranks_from_topk(topk: Tensor) -> Tensor:
    """``[users, K + 1]`` hit flags (and positive counts) → the first hit's 1-based position, 0 for none, ``[users]``."""
    hits = topk[:, :-1].bool()  # [users, K]
    first = hits.float().argmax(dim=1) + 1
    return torch.where(hits.any(dim=1), first, torch.zeros_like(first))


def check_one_row_per_user(data, flag: str = "--rank_file", split: str = "test") -> None:
    """A rank file (``flag``) needs one row per user in its ``split`` (leave-one-out): a one-line error before any
    training."""
    dataset = data._dataset
    rows, users = len(dataset.inter_feat), len(torch.unique(dataset.inter_feat[dataset.uid_field]))
    if rows != users:
        raise UserError(f"{flag}: the {split} split of {dataset.dataset_name} has {rows} rows for {users} users; "
                        "it needs one row per user (leave-one-out, full ranking)")


def write_ranks(path: str, data, topk: Tensor) -> int:
    """Write ``user,rank`` rows for the users of an evaluation split ``data`` (in its row order); returns the
    number of rows."""
    dataset = data._dataset
    users = dataset.inter_feat[dataset.uid_field]
    if len(users) != topk.shape[0]:
        raise ValueError(f"rank file {path}: {topk.shape[0]} evaluated users but {len(users)} rows in the split; "
                         "it needs one row per user (leave-one-out, full ranking)")
    tokens = dataset.id2token(dataset.uid_field, users.numpy())
    ranks = ranks_from_topk(topk).tolist()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "rank"])
        writer.writerows(zip(tokens.tolist(), ranks))
    return len(ranks)
