"""On-disk caches of the data stages (item vectors, semantic IDs, neighbour tables) that know their inputs.

A cache file is named by a hash of its *spec*: the config keys that made it and, under ``inputs``, a content
hash of each dataset file it was computed from (:func:`dataset_inputs`), so an edited ``.inter`` or ``.item``
gives a new name and a rebuild; :func:`explain_miss` logs which input changed since the closest older cache.
Every file is written atomically (a temporary file, then ``os.replace``); one that no longer loads (truncated,
corrupt) is reported with its path and rebuilt (:func:`load_cached`).

Under DDP a cache is built once: rank 0 looks it up and, on a miss, builds and writes it; the other ranks wait in
:func:`load_cached` until rank 0 has found the file or written it (the barrier at the end of :func:`save_cached`),
then read it. Only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

import numpy as np

from recbole_streamrec.distributed import barrier, is_main

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Config keys that change which rows and ids RecBole makes of the dataset files.
DATASET_KEYS = ("load_col", "unused_col", "rm_dup_inter", "val_interval", "filter_inter_by_user_or_item",
                "user_inter_num_interval", "item_inter_num_interval", "field_separator", "seq_separator")
_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-1 of a file's content (16 hex digits), remembered while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        sha = hashlib.sha1()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        _digests[key] = sha.hexdigest()[:16]
    return _digests[key]


def dataset_inputs(config: Mapping[str, Any], suffixes: tuple[str, ...]) -> dict[str, Any]:
    """``{"tiny.inter": <content hash>, …, "keys": {…}}``: the dataset files (that exist) and loading keys."""
    folder, name = Path(config["data_path"]), str(config["dataset"])
    files = {f"{name}.{s}": file_digest(folder / f"{name}.{s}") for s in suffixes if (folder / f"{name}.{s}").is_file()}
    return {**files, "keys": {k: config[k] for k in DATASET_KEYS if config[k] is not None}}


def cache_path(config: Mapping[str, Any], kind: str, spec: Mapping[str, Any], suffix: str) -> Path:
    """A cache file named by what made it: ``<cache_dir>/<dataset>/<kind>-<hash of spec><suffix>``."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(config["cache_dir"] or "saved/cache") / str(config["dataset"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{digest}{suffix}"


def load_cached(path: Path, load: Callable[[Path], T], what: str) -> Optional[T]:
    """``load(path)``, or None when there is no such file or it no longer loads (a warning names it).

    Under DDP the ranks other than 0 first wait for rank 0 (which reaches the barrier on a hit, or in
    :func:`save_cached` after a miss); a miss that follows calls :func:`save_cached` as usual.
    """
    if not is_main():
        barrier()
    value = _load_file(path, load, what)
    if is_main() and value is not None:
        barrier()
    return value


def find_cached(config: Mapping[str, Any], kind: str, spec: Mapping[str, Any], suffix: str,
                load: Callable[[Path], T], what: str) -> tuple[Path, Optional[T]]:
    """``(path, value)``: the cache file for ``spec`` (:func:`cache_path`) and its content (:func:`load_cached`),
    or ``(path, None)`` after logging why it must be built (:func:`explain_miss`); the caller then builds the
    value and writes it with :func:`save_cached`."""
    path = cache_path(config, kind, spec, suffix)
    value = load_cached(path, load, what)
    if value is None:
        explain_miss(path, spec, what)
    return path, value


def _load_file(path: Path, load: Callable[[Path], T], what: str) -> Optional[T]:
    if not path.is_file():
        return None
    try:
        value = load(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        logger.warning(f"{path}: corrupt {what} cache ({type(err).__name__}: {err}); rebuilding it")
        return None
    logger.info(f"reusing cached {what} {path}")
    return value


def _spec_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names of what differs: spec keys, and under ``inputs`` the dataset files or loading keys."""
    changed = []
    for key, value in new.items():
        if key == "inputs" and isinstance(old.get(key), dict):
            changed += [f"{name} (content)" if name != "keys" else "dataset loading keys"
                        for name in value if old[key].get(name) != value[name]]
        elif old.get(key) != value:
            changed.append(key)
    return changed


def explain_miss(path: Path, spec: Mapping[str, Any], what: str) -> None:
    """Log why ``path`` is built: what changed since the closest older cache of the same kind, if any."""
    if path.is_file():
        logger.info(f"building {what} again: the cached {path} did not load")
        return
    kind = path.name.rsplit("-", 1)[0]
    new = json.loads(json.dumps(spec, default=str))
    best: Optional[tuple[int, float, Path, list[str]]] = None
    for sidecar in path.parent.glob(f"{kind}-*.json"):
        try:
            old = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        changed = _spec_diff(old, new) if isinstance(old, dict) else ["everything"]
        candidate = (len(changed), -sidecar.stat().st_mtime, sidecar, changed)
        if changed and (best is None or candidate[:2] < best[:2]):
            best = candidate
    if best is None:
        logger.info(f"building {what}: no cache yet for these inputs")
    else:
        logger.info(f"building {what}: {', '.join(best[3])} changed since {best[2].with_suffix('')}.*")


def _replace_atomically(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_cached(path: Path, spec: Mapping[str, Any], array: np.ndarray, extra: Optional[dict] = None) -> None:
    """Write ``array`` (``.npy``, or ``.npz`` as ``codes``) and its ``.json`` spec beside it, each atomically.

    Under DDP only rank 0 writes, then lets the ranks waiting in :func:`load_cached` go on.
    """
    if not is_main():
        return
    if path.suffix == ".npz":
        _replace_atomically(path, lambda f: np.savez(f, codes=array))
    else:
        _replace_atomically(path, lambda f: np.save(f, array, allow_pickle=False))
    sidecar = json.dumps({**spec, **(extra or {})}, indent=2, default=str).encode()
    _replace_atomically(path.with_suffix(".json"), lambda f: f.write(sidecar))
    barrier()
