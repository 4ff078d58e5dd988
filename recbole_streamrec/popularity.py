"""A popularity floor for every generative run: RecBole's ``Pop`` on the same split, scored by the same evaluator.

A recommender that does not beat "most popular first" has learnt nothing about the user, and a short or
broken run can end there without anything saying so. :func:`popularity_floor` fits RecBole's ``Pop`` on the
run's own training interactions and evaluates it with the run's own loader, so the two numbers printed side
by side differ only by the model.

The sequential training split holds one row per target item from each user's second item on; the first item
only appears as the one-item history of the user's first row, so it is counted from there: the counts are
exactly the user's training interactions. Unlike ``--model=Pop`` (a general model, whose full-sort evaluation
masks items the user has already seen), the floor is evaluated like the sequential model beside it: unmasked.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender import Pop
from recbole.trainer import Trainer

from recbole_streamrec.trainer.checkpoint import plain_results


def training_item_counts(train_data, config) -> torch.Tensor:
    """How often each item occurs in the training interactions, ``[n_items]`` (row 0: padding, 0)."""
    feat, n_items = train_data._dataset.inter_feat, train_data._dataset.item_num
    seq_field, len_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"], config["ITEM_LIST_LENGTH_FIELD"]
    firsts = feat[seq_field][feat[len_field] == 1, 0]  # each user's first item, from its first row's history
    return torch.bincount(torch.cat([feat[config["ITEM_ID_FIELD"]], firsts]), minlength=n_items)


def popularity_floor(config, train_data, eval_data) -> dict[str, float]:
    """RecBole's ``Pop`` with the run's training counts, evaluated on ``eval_data`` by RecBole's evaluator."""
    pop = Pop(config, train_data._dataset).to(config["device"])
    counts = training_item_counts(train_data, config).to(pop.item_cnt.device)
    pop.item_cnt[:, 0] = counts
    pop.max_cnt = pop.item_cnt.max(dim=0)[0]
    return plain_results(Trainer(config, pop).evaluate(eval_data, load_best_model=False))


def floor_line(result: dict[str, float], floor: dict[str, float], metric: str) -> str:
    """``test ndcg@10 0.0412 vs Pop 0.0205 (2.01×)`` for the log."""
    ours, base = result.get(metric, float("nan")), floor.get(metric, float("nan"))
    ratio = f"{ours / base:.2f}×" if base else "n/a"
    return f"test {metric} {ours:.4f} vs Pop {base:.4f} on the same split and evaluator ({ratio} Pop)"
