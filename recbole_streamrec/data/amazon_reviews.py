"""Convert the public Amazon Reviews 2023 files into RecBole atomic files.

Inputs (plain ``.jsonl`` or gzip ``.jsonl.gz``, told apart by the file's first bytes; one JSON
object per line):

* a review file (e.g. ``Musical_Instruments.jsonl.gz``): ``user_id``, ``parent_asin`` and
  ``timestamp`` (int, milliseconds since the epoch) are read; every other field is ignored;
* an optional meta file (e.g. ``meta_Musical_Instruments.jsonl.gz``): ``parent_asin``, ``title``,
  ``store``, ``categories``, ``features`` and ``description`` are read.

Output, under ``out_dir/name/``:

* ``name.inter`` — ``user_id:token  item_id:token  timestamp:float`` (item_id = parent_asin),
  sorted by user id then timestamp, ties in file order; exact duplicate (user, item, timestamp)
  rows dropped; users and items iteratively filtered to the k-core;
* ``name.item`` (only with a meta file) — ``item_id:token  title:token_seq  brand:token_seq
  categories:token_seq  description:token_seq`` for the items that survive the k-core, in order of
  first appearance in ``name.inter``.

Text is made safe for the tab-separated format: every run of whitespace (tabs, newlines, carriage
returns, …) becomes one space, and each double quote becomes two apostrophes (``12"`` →
``12''``).
RecBole reads atomic files with ``pandas.read_csv`` and its default csv quoting, where a field that
starts with ``"`` swallows tabs and lines up to the next quote; other readers split lines on tabs
with no quoting at all. With no ``"`` left, every field is written bare and all readers agree.

CLI::

    python -m recbole_streamrec.data.amazon_reviews --reviews Musical_Instruments.jsonl.gz \\
        --meta meta_Musical_Instruments.jsonl.gz --name amazon-musical-instruments --out dataset
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REVIEW_FIELDS = ("user_id", "parent_asin", "timestamp")
INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float"]
ITEM_HEADER = [
    "item_id:token",
    "title:token_seq",
    "brand:token_seq",
    "categories:token_seq",
    "description:token_seq",
]
_GZIP_MAGIC = b"\x1f\x8b"
# Whitespace of any kind (tab, newline, CR, form feed, U+2028, …) and NUL: each would break a line
# of the tab-separated atomic file, so runs of them become one space.
_UNSAFE_TEXT = re.compile(r"[\s\x00]+")
# Characters an id (a token field) must never hold: they would split the row or the line, or
# (the double quote) start a quoted field for csv-quoting readers.
_UNSAFE_ID = re.compile(r'[\t\n\r"\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]')


@dataclass(frozen=True)
class ConversionStats:
    """Counts describing one conversion (after duplicate dropping and the k-core)."""

    users: int
    items: int
    interactions: int
    items_without_meta: int
    dropped_duplicates: int

    def __str__(self) -> str:
        return (
            f"users={self.users} items={self.items} interactions={self.interactions} "
            f"items_without_meta={self.items_without_meta} "
            f"dropped_duplicates={self.dropped_duplicates}"
        )


def _open_text(path: Path) -> io.TextIOBase:
    """Open ``path`` for reading as UTF-8 text, gunzipping it when it starts with the gzip magic."""
    if not path.is_file():
        raise FileNotFoundError(f"Amazon Reviews input file not found: {path}")
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file (1-based)."""
    lineno = 0
    with _open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {lineno}: not valid JSON ({err.msg})") from err
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}, line {lineno}: expected a JSON object")
                yield lineno, obj
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
            raise ValueError(f"{path}, after line {lineno}: cannot read file ({err})") from err


def _require(obj: dict, field: str, path: Path, lineno: int) -> object:
    """Return ``obj[field]``; a ValueError names file, line and field when it is absent or empty."""
    value = obj.get(field)
    if value is None or value == "":
        raise ValueError(f"{path}, line {lineno}: missing required field '{field}'")
    return value


def _intern_id(value: object, index: dict[str, int], field: str, path: Path, lineno: int) -> int:
    """Map an id to a dense int code; each new id is checked once for forbidden characters."""
    key = str(value)
    code = index.get(key)
    if code is None:
        if _UNSAFE_ID.search(key):
            raise ValueError(
                f"{path}, line {lineno}: field '{field}' holds a tab, line break or '\"': {key!r}"
            )
        code = index[key] = len(index)
    return code


def read_reviews(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Read a review file into int-coded interactions, in file order.

    Returns:
        ``(inter, user_ids, item_ids)``: ``inter`` has int columns ``user``, ``item`` (codes into
        ``user_ids`` / ``item_ids``, arrays of str) and ``timestamp``; one row per review line.
    """
    path = Path(path)
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users, items, stamps = [], [], []
    for lineno, obj in _iter_json_lines(path):
        user, item, stamp = (_require(obj, field, path, lineno) for field in REVIEW_FIELDS)
        try:
            stamps.append(int(stamp))
        except (TypeError, ValueError) as err:
            msg = f"{path}, line {lineno}: field 'timestamp' is not an integer: {stamp!r}"
            raise ValueError(msg) from err
        users.append(_intern_id(user, user_index, "user_id", path, lineno))
        items.append(_intern_id(item, item_index, "parent_asin", path, lineno))
    inter = pd.DataFrame(
        {
            "user": np.asarray(users, dtype=np.int64),
            "item": np.asarray(items, dtype=np.int64),
            "timestamp": np.asarray(stamps, dtype=np.int64),
        }
    )
    return inter, np.array(list(user_index), dtype=object), np.array(list(item_index), dtype=object)


def k_core_filter(inter: pd.DataFrame, k: int, logger: logging.Logger) -> pd.DataFrame:
    """Drop users and items with fewer than ``k`` interactions, repeatedly, until both hold.

    The k-core is unique, so removing both sides in one pass gives the same result as alternating.
    ``k <= 1`` returns ``inter`` unchanged. Raises ValueError when nothing survives.
    """
    if k <= 1:
        return inter
    n_pass = 0
    while True:
        user_n = inter.groupby("user")["user"].transform("size")
        item_n = inter.groupby("item")["item"].transform("size")
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            break
        n_pass += 1
        inter = inter[keep.to_numpy()]
        logger.info(
            "k-core pass %d (k=%d): %d users, %d items, %d interactions",
            n_pass, k, inter["user"].nunique(), inter["item"].nunique(), len(inter),
        )
        if inter.empty:
            raise ValueError(f"k-core filtering left no interactions (k={k}); try a smaller k")
    return inter


def sort_interactions(inter: pd.DataFrame, user_ids: np.ndarray) -> pd.DataFrame:
    """Sort by user id (as a string), then timestamp; ties keep their file order."""
    order = np.argsort(user_ids.astype(str), kind="stable")
    rank = np.empty(len(user_ids), dtype=np.int64)
    rank[order] = np.arange(len(user_ids))
    # np.lexsort is stable: rows equal on (user, timestamp) keep their file order.
    idx = np.lexsort((inter["timestamp"].to_numpy(), rank[inter["user"].to_numpy()]))
    return inter.iloc[idx].reset_index(drop=True)


def clean_text(text: object) -> str:
    """Turn a value into one field of an atomic file.

    Runs of whitespace (tab, newline, CR, …) become one space and ``"`` becomes ``''``.
    """
    if text is None:
        return ""
    return _UNSAFE_TEXT.sub(" ", str(text)).strip().replace('"', "''")


def _text_list(value: object) -> list[str]:
    """Cleaned, non-empty strings of a meta field meant as a list of str (a str or null is fine)."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    return [text for text in (clean_text(v) for v in value) if text]


def meta_row(obj: dict, max_text_chars: int) -> tuple[str, str, str, str]:
    """``(title, brand, categories, description)`` of one meta record, cleaned for atomic files."""
    title = clean_text(obj.get("title"))
    brand = clean_text(obj.get("store"))
    categories = ",".join(_text_list(obj.get("categories")))
    text = " ".join(_text_list(obj.get("features")) + _text_list(obj.get("description")))
    return title, brand, categories, text[:max_text_chars].rstrip()


def read_meta(
    path: str | Path, wanted: set[str], max_text_chars: int
) -> dict[str, tuple[str, str, str, str]]:
    """Read the meta rows of the ``wanted`` parent_asins (first row wins when one repeats)."""
    path = Path(path)
    rows: dict[str, tuple[str, str, str, str]] = {}
    for lineno, obj in _iter_json_lines(path):
        asin = str(_require(obj, "parent_asin", path, lineno))
        if asin in wanted and asin not in rows:
            rows[asin] = meta_row(obj, max_text_chars)
    return rows


def _write_all(files: dict[Path, tuple[pd.DataFrame, list[str]]]) -> None:
    """Write each ``path: (frame, header)`` as a tab-separated atomic file, all or nothing.

    Every file goes to a temporary name first; only when all are written are they renamed, so a failure
    leaves the dataset's old files as they were. Fields are written bare (no csv quoting): ids and cleaned
    text hold no tab, line break or ``"``.
    """
    tmps = {path: path.with_name(path.name + ".tmp") for path in files}
    try:
        for path, (frame, header) in files.items():
            frame.to_csv(
                tmps[path], sep="\t", header=header, index=False, lineterminator="\n",
                quoting=csv.QUOTE_NONE, encoding="utf-8",
            )
        for path, tmp in tmps.items():
            tmp.replace(path)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def item_frame(
    item_order: np.ndarray, meta: dict[str, tuple[str, str, str, str]]
) -> tuple[pd.DataFrame, int]:
    """The ``name.item`` rows for ``item_order``; items absent from ``meta`` get empty text fields.

    Returns:
        ``(frame, number of items without a meta row)``.
    """
    empty = ("", "", "", "")
    rows = [(item, *meta.get(item, empty)) for item in item_order]
    missing = sum(1 for item in item_order if item not in meta)
    return pd.DataFrame(rows, columns=ITEM_HEADER, dtype=object), missing


def _check_args(name: str, k_core: int, max_text_chars: int) -> None:
    """Reject arguments that cannot give a valid dataset folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    if k_core < 0:
        raise ValueError(f"k_core must be >= 0, got {k_core}")
    if max_text_chars < 1:
        raise ValueError(f"max_text_chars must be >= 1, got {max_text_chars}")


def _interactions(
    reviews_path: str | Path, k_core: int, log: logging.Logger
) -> tuple[pd.DataFrame, int]:
    """Read, de-duplicate, k-core filter and sort the reviews.

    Returns:
        ``(inter, dropped_duplicates)``; ``inter`` has str ``user_id``, ``item_id`` and int
        ``timestamp`` columns in output order.
    """
    inter, user_ids, item_ids = read_reviews(reviews_path)
    n_read = len(inter)
    if n_read == 0:
        raise ValueError(f"{reviews_path}: no reviews found")
    inter = inter[~inter.duplicated(["user", "item", "timestamp"], keep="first").to_numpy()]
    n_dup = n_read - len(inter)
    log.info(
        "read %s: %d review lines, %d users, %d items, %d duplicate interactions dropped",
        reviews_path, n_read, len(user_ids), len(item_ids), n_dup,
    )
    inter = sort_interactions(k_core_filter(inter, k_core, log), user_ids)
    out = pd.DataFrame(
        {
            "user_id": user_ids[inter["user"].to_numpy()],
            "item_id": item_ids[inter["item"].to_numpy()],
            "timestamp": inter["timestamp"].to_numpy(),
        }
    )
    return out, n_dup


def _convert_meta(
    meta_path: str | Path, item_order: np.ndarray, max_text_chars: int, log: logging.Logger,
) -> tuple[pd.DataFrame, int]:
    """The ``.item`` rows for ``item_order`` and (with a warning) the number of items without meta."""
    meta = read_meta(meta_path, set(item_order), max_text_chars)
    frame, missing = item_frame(item_order, meta)
    if missing:
        examples = ", ".join([item for item in item_order if item not in meta][:5])
        log.warning(
            "%d of %d items have no row in %s; their text fields are empty (e.g. %s)",
            missing, len(item_order), meta_path, examples,
        )
    return frame, missing


def convert_amazon2023(
    reviews_path: str | Path,
    meta_path: str | Path | None,
    out_dir: str | Path,
    *,
    name: str,
    k_core: int = 5,
    max_text_chars: int = 2000,
    logger: logging.Logger | None = None,
) -> ConversionStats:
    """Convert Amazon Reviews 2023 review (+ meta) files into ``out_dir/name/name.{inter,item}``.

    Args:
        reviews_path: review ``.jsonl`` / ``.jsonl.gz`` file.
        meta_path: meta ``.jsonl`` / ``.jsonl.gz`` file, or None to write no ``.item`` file.
        out_dir: dataset root (RecBole's ``data_path``); ``out_dir/name`` is created.
        name: dataset name (RecBole's ``dataset``).
        k_core: minimum interactions per user and per item; 0 or 1 disables the filter.
        max_text_chars: the item description is cut to this many characters.
        logger: where progress goes; ``logging.getLogger(__name__)`` when None.

    Returns:
        The :class:`ConversionStats` of the written files (``items_without_meta`` is 0 when
        ``meta_path`` is None).
    """
    log = logger or logging.getLogger(__name__)
    _check_args(name, k_core, max_text_chars)
    if meta_path is not None and not Path(meta_path).is_file():
        raise FileNotFoundError(f"Amazon Reviews meta file not found: {meta_path}")
    inter, n_dup = _interactions(reviews_path, k_core, log)

    folder = Path(out_dir) / name
    files = {folder / f"{name}.inter": (inter, INTER_HEADER)}
    item_order = pd.unique(inter["item_id"])
    items_without_meta = 0
    if meta_path is not None:  # read (and fail) before any file is written
        item_rows, items_without_meta = _convert_meta(meta_path, item_order, max_text_chars, log)
        files[folder / f"{name}.item"] = (item_rows, ITEM_HEADER)
    elif (folder / f"{name}.item").exists():
        log.warning("no meta file given; the old %s is left as it was", folder / f"{name}.item")
    folder.mkdir(parents=True, exist_ok=True)
    _write_all(files)
    stats = ConversionStats(
        users=int(inter["user_id"].nunique()),
        items=len(item_order),
        interactions=len(inter),
        items_without_meta=items_without_meta,
        dropped_duplicates=n_dup,
    )
    log.info("wrote %s: %s", folder, stats)
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: convert, then print the stats."""
    parser = argparse.ArgumentParser(
        prog="python -m recbole_streamrec.data.amazon_reviews",
        description="Convert Amazon Reviews 2023 files into RecBole atomic files.",
    )
    parser.add_argument("--reviews", required=True, help="review file (.jsonl or .jsonl.gz)")
    parser.add_argument("--meta", default=None, help="meta file (.jsonl or .jsonl.gz); optional")
    parser.add_argument("--name", required=True, help="dataset name: writes OUT/NAME/NAME.*")
    parser.add_argument("--out", default="dataset", help="dataset root, RecBole's data_path")
    parser.add_argument("--k-core", type=int, default=5, help="min interactions per user and item")
    parser.add_argument("--max-text-chars", type=int, default=2000, help="description length cap")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        stats = convert_amazon2023(
            args.reviews, args.meta, args.out, name=args.name,
            k_core=args.k_core, max_text_chars=args.max_text_chars,
        )
    except (FileNotFoundError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    print(stats)


if __name__ == "__main__":
    main(sys.argv[1:])
