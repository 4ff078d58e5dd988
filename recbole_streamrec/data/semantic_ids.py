"""Semantic IDs for a dataset: item vectors → RQ-VAE → ``[n_items, m]`` codes, cached on disk (SPEC §2).

The tokenizer is its own stage (as in GRID): it hands over through ``<cache_dir>/<dataset>/semantic_ids-*.npz``
(codes, loadable with ``allow_pickle=False``) and a ``.json`` report beside it, so every generative model on
the same dataset and settings reuses the same codes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from recbole_streamrec.data.cache import dataset_inputs, find_cached, save_cached
from recbole_streamrec.data.item_vectors import item_vectors

logger = logging.getLogger(__name__)

RQVAE_KEYS = ("rqvae_epochs", "rqvae_batch_size", "rqvae_lr", "rqvae_hidden_dims", "rqvae_latent_dim",
              "rqvae_levels", "codebook_size", "rqvae_beta", "seed")


def _load_codes(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return archive["codes"]


def semantic_ids_of(config: Mapping[str, Any], train_dataset, source: str) -> np.ndarray:
    """:func:`semantic_ids` of the item vectors ``source`` (text | collaborative | cooccurrence), whatever
    ``item_vector_source`` says; every other tokenizer key is the config's (same cache rules)."""
    from recbole_streamrec.data.item_vectors import _ConfigView

    view = _ConfigView(getattr(config, "final_config_dict", config))
    view["item_vector_source"] = source
    return semantic_ids(view, train_dataset)


def semantic_ids(config: Mapping[str, Any], train_dataset) -> np.ndarray:
    """Codes ``[n_items, rqvae_levels + 1]`` (row 0 = padding, zeros); every item's tuple is unique."""
    vectors, source = item_vectors(config, train_dataset)
    spec = {"vectors": source, "vector_shape": list(vectors.shape),
            "vector_sum": round(float(np.abs(vectors).sum()), 3), **{k: config[k] for k in RQVAE_KEYS},
            "inputs": dataset_inputs(config, ("inter", "item") if source == "text" else ("inter",))}
    path, cached = find_cached(config, "semantic_ids", spec, ".npz", _load_codes, "semantic IDs")
    if cached is not None:
        return cached
    from recbole_streamrec.tokenizer.rqvae import train_rqvae

    logger.info(f"training the RQ-VAE tokenizer on {vectors.shape[0] - 1} {source} item vectors")
    _, codes, report = train_rqvae(
        vectors[1:], epochs=config["rqvae_epochs"], batch_size=config["rqvae_batch_size"],
        lr=config["rqvae_lr"], seed=config["seed"], hidden_dims=tuple(config["rqvae_hidden_dims"]),
        latent_dim=config["rqvae_latent_dim"], n_levels=config["rqvae_levels"],
        codebook_size=config["codebook_size"], beta=config["rqvae_beta"], logger=logger,
    )
    logger.info("RQ-VAE report:\n" + report.summary())
    out = np.zeros((vectors.shape[0], codes.shape[1]), dtype=np.int64)
    out[1:] = codes
    save_cached(path, spec, out, {"report": report.__dict__})
    logger.info(f"saved semantic IDs {out.shape} to {path}")
    return out
