"""Most similar items by item-vector cosine (SPEC §5): stage-1 target lengthening, DPO and RL negatives."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch

from recbole_streamrec.data.cache import dataset_inputs, find_cached, save_cached
from recbole_streamrec.data.item_vectors import item_vectors
from recbole_streamrec.errors import UserError

logger = logging.getLogger(__name__)


def cosine_top_k(vectors: np.ndarray, k: int, *, chunk: int = 2048) -> np.ndarray:
    """``[n_items, d]`` (row 0 = padding) → ``[n_items, k]`` ids of the k most similar *other* items.

    Row 0 and the item itself are never returned; the padding row's own neighbours are meaningless (0s).
    Computed in chunks of rows so memory stays ``O(chunk · n_items)``.
    """
    n = vectors.shape[0]
    if k > n - 2:
        raise ValueError(f"asked for {k} neighbours but the dataset has only {n - 1} items")
    x = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    out = np.zeros((n, k), dtype=np.int64)
    for start in range(1, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        sim = x[rows] @ x.T  # [chunk, n]
        sim[:, 0] = float("-inf")
        sim[torch.arange(len(rows)), rows] = float("-inf")
        out[rows.numpy()] = sim.topk(k, dim=1).indices.numpy()
    return out


def item_neighbours(config: Mapping[str, Any], train_dataset, k: int) -> np.ndarray:
    """Cached neighbour table ``[n_items, k]`` over the same item vectors as the tokenizer."""
    vectors, source = item_vectors(config, train_dataset)
    if k > vectors.shape[0] - 2:
        raise UserError(f"dataset {config['dataset']} has {vectors.shape[0] - 1} items, too few for {k} neighbours "
                        "per item: pt_neighbours, dpo_negative_pool and rl_hard_negatives must stay below it")
    spec = {"vectors": source, "shape": list(vectors.shape), "sum": round(float(np.abs(vectors).sum()), 3), "k": k,
            "inputs": dataset_inputs(config, ("inter", "item") if source == "text" else ("inter",))}
    path, cached = find_cached(config, "neighbours", spec, ".npy", lambda p: np.load(p, allow_pickle=False),
                               "neighbour table")
    if cached is not None:
        return cached
    table = cosine_top_k(vectors, k)
    save_cached(path, spec, table)
    logger.info(f"saved neighbour table {table.shape} to {path}")
    return table
