"""Caches know their inputs (issue 11): an edited dataset file rebuilds them and the log says why; a corrupt cache
file is named and rebuilt; every cache file is written atomically. Each test works on its own copy of ``tiny``.
"""

from __future__ import annotations

import logging
import sys
import types
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import recbole_streamrec  # noqa: F401  (numpy-2 shims before RecBole)
from conftest import DATASET, overrides, write_tiny_dataset
from recbole_streamrec.config import Config
from recbole_streamrec.data.item_vectors import collaborative_item_vectors
from recbole_streamrec.data.neighbours import item_neighbours
from recbole_streamrec.data.semantic_ids import semantic_ids
from recbole_streamrec.quick_start import load_data


class HashEncoder:
    """Stands in for sentence-transformers: a fixed random vector per text (no model to load)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) for t in texts]
        return np.stack(rows).astype(np.float32)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=HashEncoder))
    caplog.set_level(logging.INFO, logger="recbole_streamrec")
    write_tiny_dataset(tmp_path / "data")
    return tmp_path


@pytest.fixture
def train_of(root: Path) -> Callable[..., tuple[Config, Any]]:
    """``train_of(item_vector_source="text")`` → ``(config, training dataset)`` of the current files."""

    def build(**extra: Any) -> tuple[Config, Any]:
        config = Config(model="TIGER", dataset=DATASET, config_dict=overrides(root, "TIGER", **extra))
        return config, load_data(config)[1]._dataset

    return build


def cache_files(root: Path, pattern: str) -> list[Path]:
    return sorted((root / "cache" / DATASET).glob(pattern))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_edited_item_titles_rebuild_text_vectors_and_semantic_ids(train_of, root: Path, caplog) -> None:
    before = semantic_ids(*train_of(item_vector_source="text"))
    edit(root / "data" / DATASET / f"{DATASET}.item", "red guitar model 0", "red ukulele model 0")
    caplog.clear()
    after = semantic_ids(*train_of(item_vector_source="text"))
    assert len(cache_files(root, "item_vectors-text-*.npy")) == 2
    assert len(cache_files(root, "semantic_ids-*.npz")) == 2
    assert f"{DATASET}.item (content) changed since" in caplog.text
    assert before.shape == after.shape


def test_edited_inter_rows_rebuild_collaborative_vectors(train_of, root: Path, caplog) -> None:
    collaborative_item_vectors(*train_of())
    # same users, items and row count: only the order one user walked two items in changes
    edit(root / "data" / DATASET / f"{DATASET}.inter", "u00\ti01\t0\nu00\ti02\t1", "u00\ti02\t0\nu00\ti01\t1")
    caplog.clear()
    collaborative_item_vectors(*train_of())
    assert len(cache_files(root, "item_vectors-cf-*.npy")) == 2
    assert f"building collaborative item vectors: {DATASET}.inter (content) changed since" in caplog.text


@pytest.mark.parametrize("pattern", ["semantic_ids-*.npz", "item_vectors-cf-*.npy", "neighbours-*.npy"])
def test_truncated_cache_is_named_and_rebuilt(train_of, root: Path, caplog, pattern: str) -> None:
    config, train = train_of()
    build = (lambda: item_neighbours(config, train, 3)) if pattern.startswith("neighbours") else \
        (lambda: semantic_ids(config, train))
    first = build()
    (path,) = cache_files(root, pattern)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    caplog.clear()
    again = build()
    assert f"{path}: corrupt" in caplog.text and "rebuilding it" in caplog.text
    assert np.array_equal(again, first)
    np.load(path, allow_pickle=False)  # whole again


@pytest.mark.parametrize("writer", ["savez", "save"])
def test_cache_writes_are_atomic(train_of, root: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    """A semantic-ID or neighbour-table write killed half-way leaves no cache file behind (nor a temporary one)."""
    config, train = train_of()
    item_neighbours(config, train, 2)  # item vectors (and a first neighbour table) cached before the kill
    before = set(cache_files(root, "*"))
    real = getattr(np, writer)

    def killed(file: Any, *args: Any, **kwargs: Any) -> None:
        name = str(getattr(file, "name", file))
        if writer == "save" and "neighbours" not in name:
            return real(file, *args, **kwargs)
        (open(file, "wb") if isinstance(file, (str, Path)) else file).write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # the process is killed here

    monkeypatch.setattr(np, writer, killed)
    with pytest.raises(KeyboardInterrupt):
        item_neighbours(config, train, 3) if writer == "save" else semantic_ids(config, train)
    assert set(cache_files(root, "*")) == before
