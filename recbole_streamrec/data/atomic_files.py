"""Checks of a dataset before and after RecBole loads it, so bad input stops with a one-line error.

:func:`check_atomic_files` reads the atomic files RecBole is about to load (``.inter``, and ``.item`` /
``.user`` where they are used) line by line: a header of ``name:type`` columns, one row per line with as many
fields as the header, numbers in ``float`` columns, non-empty ids. :func:`check_split` refuses a split with
nothing to train on or no user to evaluate (RecBole would report ``test result: None``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from recbole_streamrec.errors import UserError

FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")


def _used_sources(config: Mapping[str, Any]) -> list[str]:
    """Atomic-file suffixes RecBole loads: ``inter`` always, ``item``/``user`` when ``load_col`` asks for them."""
    load_col = config["load_col"]
    extra = [s for s in ("item", "user") if load_col is None or s in load_col]
    # generative models read item text from the .item file themselves
    if "item" not in extra and config["text_fields"] is not None:
        extra.append("item")
    return ["inter", *extra]


def _recbole_downloads(name: str) -> bool:
    import recbole

    urls = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    return urls.is_file() and name in (yaml.safe_load(urls.read_text(encoding="utf-8")) or {})


def check_atomic_files(config: Mapping[str, Any]) -> None:
    """Raise :class:`UserError` naming the file and line of the first problem in the dataset's atomic files."""
    folder, name = Path(config["data_path"]), str(config["dataset"])
    if not folder.is_dir():
        if _recbole_downloads(name):
            return  # RecBole downloads it
        raise UserError(f"dataset {name!r}: no folder {folder} (data_path/dataset); it must hold {name}.inter")
    if not (folder / f"{name}.inter").is_file():
        raise UserError(f"dataset {name!r}: no {folder / (name + '.inter')}; a RecBole atomic dataset needs one")
    required = {"inter": [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]], "item": [config["ITEM_ID_FIELD"]],
                "user": [config["USER_ID_FIELD"]]}
    if (config["eval_args"] or {}).get("order") == "TO":
        required["inter"].append(config["TIME_FIELD"])  # chronological split
    for source in _used_sources(config):
        path = folder / f"{name}.{source}"
        if path.is_file():
            check_atomic_file(path, [f for f in required[source] if f], config["field_separator"] or "\t",
                              config["encoding"] or "utf-8")


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    with path.open(encoding=encoding, newline="") as f:
        for lineno, line in enumerate(f, start=1):
            yield lineno, line.rstrip("\r\n")


def _read_header(path: Path, line: str, required: list[str], sep: str) -> list[tuple[str, str]]:
    columns = [c.split(":", 1) for c in line.split(sep)]
    bad = [":".join(c) for c in columns if len(c) != 2 or not c[0] or c[1] not in FEATURE_TYPES]
    if bad:
        raise UserError(f"{path}, line 1: header column {bad[0]!r} is not name:type with type one of "
                        f"{', '.join(FEATURE_TYPES)} (is the header line missing?)")
    names = [c[0] for c in columns]
    missing = [f for f in required if f not in names]
    if missing:
        raise UserError(f"{path}, line 1: no {missing[0]!r} column; the header has {', '.join(names)}")
    return [(c[0], c[1]) for c in columns]


def check_atomic_file(path: Path, required: list[str], sep: str = "\t", encoding: str = "utf-8") -> None:
    """One atomic file: a valid header with the ``required`` fields, then rows that match it."""
    lines = _lines(path, encoding)
    try:
        header = next((n, line) for n, line in lines if line.strip())
    except StopIteration:
        raise UserError(f"{path}: empty file; line 1 must be a header like user_id:token<TAB>item_id:token") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not {encoding} text ({err.reason}); set `encoding` in the config") from None
    columns = _read_header(path, header[1], required, sep)
    floats = [i for i, (_, kind) in enumerate(columns) if kind == "float"]
    not_empty = [i for i, (field, _) in enumerate(columns) if field in required]
    rows = 0
    try:
        for lineno, line in lines:
            if not line.strip() or '"' in line:  # pandas skips blank lines; quoted fields may hold tabs
                rows += bool(line.strip())
                continue
            rows += 1
            _check_row(path, lineno, line.split(sep), columns, floats, not_empty)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not {encoding} text ({err.reason}); set `encoding` in the config") from None
    if rows == 0:
        raise UserError(f"{path}: header only, no rows")


def _check_row(path: Path, lineno: int, fields: list[str], columns: list[tuple[str, str]], floats: list[int],
               not_empty: list[int]) -> None:
    if len(fields) != len(columns):
        raise UserError(f"{path}, line {lineno}: {len(fields)} fields, but the header has {len(columns)} "
                        f"({', '.join(f'{n}:{t}' for n, t in columns)})")
    for i in not_empty:
        if not fields[i].strip():
            raise UserError(f"{path}, line {lineno}: field {columns[i][0]!r} is empty")
    for i in floats:
        if fields[i].strip():
            try:
                float(fields[i])
            except ValueError:
                raise UserError(f"{path}, line {lineno}: field {columns[i][0]!r} is {fields[i]!r}, "
                                "not a number (its header type is float)") from None


def check_split(config: Mapping[str, Any], dataset, train_data, valid_data, test_data) -> None:
    """Refuse a split with no training rows or no user to validate and test on, saying why."""
    name, users = config["dataset"], dataset.user_num - 1  # id 0 is padding
    if len(valid_data.dataset) == 0 or len(test_data.dataset) == 0:
        raise UserError(f"dataset {name}: no user can be evaluated: none of its {users} users has the 3 interactions "
                        "the leave-one-out split needs (one each to train, validate and test) after filtering")
    if len(train_data.dataset) == 0:
        raise UserError(f"dataset {name}: nothing to train on ({users} users after filtering); the leave-one-out split "
                        "keeps every user's last 2 interactions for validation and test")
