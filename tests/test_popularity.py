"""The popularity floor printed beside every generative run: Pop on the same split and evaluator."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from recbole_streamrec.popularity import floor_line, popularity_floor, training_item_counts

from conftest import N_USERS, user_sequence


def test_counts_are_exactly_the_training_interactions(tiny_data) -> None:
    config, dataset, train = tiny_data[0], tiny_data[1], tiny_data[2]
    counts = training_item_counts(train, config)
    expected = Counter(item for u in range(N_USERS) for item in user_sequence(u)[:-2])  # valid and test held out
    by_token = {dataset.id2token(dataset.iid_field, i): int(c) for i, c in enumerate(counts.tolist()) if i}
    assert by_token == {item: expected.get(item, 0) for item in by_token}
    assert counts[0] == 0 and counts.sum() == sum(expected.values())


def test_the_floor_ranks_by_training_counts(tiny_data) -> None:
    config, train, test = tiny_data[0], tiny_data[2], tiny_data[4]
    floor = popularity_floor(config, train, test)
    assert set(floor) >= {"recall@10", "ndcg@10"} and 0 <= floor["ndcg@10"] <= floor["recall@10"] <= 1
    # every user gets the same top-10: the 10 most counted items; recall@10 is the share of test targets among them
    counts = training_item_counts(train, config).float()
    counts[0] = -1
    top = set(counts.topk(10).indices.tolist())
    targets = test._dataset.inter_feat["item_id"].tolist()
    assert floor["recall@10"] == pytest.approx(sum(t in top for t in targets) / len(targets), abs=1e-4)


def test_floor_line_says_both_numbers_and_the_ratio() -> None:
    line = floor_line({"ndcg@10": 0.041}, {"ndcg@10": 0.0205}, "ndcg@10")
    assert "0.0410" in line and "Pop 0.0205" in line and "2.00×" in line
