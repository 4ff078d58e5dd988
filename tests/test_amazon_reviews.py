"""Tests for the Amazon Reviews 2023 → RecBole atomic-file converter.

Fixture ``tests/fixtures/amazon2023/reviews.jsonl`` (25 lines, file order interleaved), worked out
by hand for ``k_core=3``. Items: I1=B0GUITAR01, I2=B0STRINGS2, I3=B0PICKS003, I4=B0CAPO0004,
I5=B0TUNER005; timestamps are 1600000000000 + the offsets below (ms).

    U_ALICE  I2@1000 I1@2000 I1@2000(duplicate) I3@3000 I4@4000
    U_BOB    I1@1500 I2@2500 I3@3500 I4@4500
    U_CAROL  I2@5000 I1@5000 (same timestamp, this file order) I3@4000
    U_DAVE   I3@9000 I1@6000 I2@7000 I2@8000 (a repeat, not a duplicate)
    U_ERIN   I1@1000 I2@2000 I5@3000
    U_FRANK  I4@1000 I5@2000
    U_GRACE  I1@1000 I1@1000(duplicate) I2@2000
    U_HEIDI  I3@100

After dropping the 2 duplicates, pass 1 removes U_FRANK, U_GRACE, U_HEIDI (< 3) and I5 (2).
That leaves U_ERIN with 2 and I4 with 2 (U_ALICE, U_BOB), so pass 2 removes both; pass 3 is stable.
Result: 4 users, 3 items (I2, I1, I3 in order of first appearance), 13 interactions.
Meta has I1 (a quote in the title, a tab and line breaks in the text), I2 (null store, empty
lists), I4, I5 and an unrelated item; I3 has no meta row.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

import recbole_streamrec  # noqa: F401  (numpy-2 shims before RecBole)
from recbole_streamrec.data.amazon_reviews import (
    INTER_HEADER,
    ITEM_HEADER,
    ConversionStats,
    clean_text,
    convert_amazon2023,
    main,
)

FIXTURES = Path(__file__).parent / "fixtures" / "amazon2023"
REVIEWS = FIXTURES / "reviews.jsonl"
META = FIXTURES / "meta.jsonl"
T = 1600000000000
I1, I2, I3 = "B0GUITAR01", "B0STRINGS2", "B0PICKS003"
EXPECTED_INTER = [
    ("U_ALICE", I2, 1000), ("U_ALICE", I1, 2000), ("U_ALICE", I3, 3000),
    ("U_BOB", I1, 1500), ("U_BOB", I2, 2500), ("U_BOB", I3, 3500),
    ("U_CAROL", I3, 4000), ("U_CAROL", I2, 5000), ("U_CAROL", I1, 5000),
    ("U_DAVE", I1, 6000), ("U_DAVE", I2, 7000), ("U_DAVE", I2, 8000), ("U_DAVE", I3, 9000),
]
EXPECTED_STATS = ConversionStats(
    users=4, items=3, interactions=13, items_without_meta=1, dropped_duplicates=2
)


def _gzip_copy(src: Path, dst: Path) -> Path:
    with src.open("rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read an atomic file as RecBole does (csv quoting) and check a quote-free reader agrees."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, engine="python")
    bare = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    pd.testing.assert_frame_equal(frame, bare)
    return frame


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _review(user: str = "U1", item: str = "B01", ts: int = T) -> dict:
    return {"rating": 5.0, "user_id": user, "parent_asin": item, "timestamp": ts}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConversionStats]:
    out = tmp_path_factory.mktemp("dataset")
    stats = convert_amazon2023(REVIEWS, META, out, name="amz", k_core=3)
    return out, stats


def test_stats_match_hand_worked_k_core(converted: tuple[Path, ConversionStats]) -> None:
    _, stats = converted
    assert stats == EXPECTED_STATS
    assert str(stats) == (
        "users=4 items=3 interactions=13 items_without_meta=1 dropped_duplicates=2"
    )


def test_inter_rows_sorted_by_user_then_time(converted: tuple[Path, ConversionStats]) -> None:
    out, _ = converted
    lines = (out / "amz" / "amz.inter").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "\t".join(INTER_HEADER)
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    assert rows == [(u, i, str(T + off)) for u, i, off in EXPECTED_INTER]


def test_item_file_order_text_cleaning_and_missing_meta(
    converted: tuple[Path, ConversionStats],
) -> None:
    out, _ = converted
    path = out / "amz" / "amz.item"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "\t".join(ITEM_HEADER)
    assert len(lines) == 4 and all(line.count("\t") == 4 for line in lines)
    items = _read_atomic(path)
    assert list(items["item_id:token"]) == [I2, I1, I3]  # first appearance in .inter
    guitar = items.set_index("item_id:token").loc[I1]
    assert guitar["title:token_seq"] == "Classic 39'' Acoustic Guitar"
    assert guitar["brand:token_seq"] == "Harmonia"
    assert guitar["categories:token_seq"] == "Musical Instruments,Instruments,Guitars"
    assert guitar["description:token_seq"] == (
        "Solid spruce top Steel strings Line one. Line two. Line three."
    )
    strings = items.set_index("item_id:token").loc[I2]
    assert list(strings) == ["Phosphor Bronze Strings", "", "", ""]  # null store, empty lists
    picks = items.set_index("item_id:token").loc[I3]  # no meta row
    assert list(picks) == ["", "", "", ""]


def test_missing_meta_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recbole_streamrec.data.amazon_reviews"):
        convert_amazon2023(REVIEWS, META, tmp_path, name="amz", k_core=3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 3 items" in warnings[0] and I3 in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("k-core pass" in m for m in infos) == 2
    assert "k-core pass 2 (k=3): 4 users, 3 items, 13 interactions" in infos


@pytest.mark.parametrize("gz", ["reviews", "meta"])
def test_gzip_input_gives_same_files(
    gz: str, converted: tuple[Path, ConversionStats], tmp_path: Path
) -> None:
    reviews, meta = REVIEWS, META
    if gz == "reviews":
        reviews = _gzip_copy(REVIEWS, tmp_path / "reviews.jsonl.gz")
    else:
        meta = _gzip_copy(META, tmp_path / "meta.jsonl.gz")
    stats = convert_amazon2023(reviews, meta, tmp_path / "out", name="amz", k_core=3)
    assert stats == EXPECTED_STATS
    ref, _ = converted
    for suffix in ("inter", "item"):
        got = (tmp_path / "out" / "amz" / f"amz.{suffix}").read_bytes()
        assert got == (ref / "amz" / f"amz.{suffix}").read_bytes()


def test_k_core_disabled_keeps_all_but_duplicates(tmp_path: Path) -> None:
    for k in (0, 1):
        stats = convert_amazon2023(REVIEWS, None, tmp_path, name=f"k{k}", k_core=k)
        assert stats == ConversionStats(
            users=8, items=5, interactions=23, items_without_meta=0, dropped_duplicates=2
        )
        assert not (tmp_path / f"k{k}" / f"k{k}.item").exists()


def test_empty_k_core_raises_with_k(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"k=5\b"):
        convert_amazon2023(REVIEWS, META, tmp_path, name="amz", k_core=5)


def test_description_truncated(tmp_path: Path) -> None:
    convert_amazon2023(REVIEWS, META, tmp_path, name="amz", k_core=3, max_text_chars=20)
    items = _read_atomic(tmp_path / "amz" / "amz.item").set_index("item_id:token")
    assert items.loc[I1, "description:token_seq"] == "Solid spruce top Ste"


def test_clean_text() -> None:
    assert clean_text("a\tb\nc\r\nd\u2028e  f ") == "a b c d e f"
    assert clean_text('"Quoted" 12"') == "''Quoted'' 12''"
    assert clean_text(None) == ""


def test_missing_files_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl.gz"
    with pytest.raises(FileNotFoundError, match="nope.jsonl.gz"):
        convert_amazon2023(missing, META, tmp_path, name="amz")
    with pytest.raises(FileNotFoundError, match="nope.jsonl.gz"):
        convert_amazon2023(REVIEWS, missing, tmp_path, name="amz")


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(_review())
    path = _write_lines(tmp_path / "bad.jsonl", [good, good, '{"user_id": "U1", '])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 3: not valid JSON"):
        convert_amazon2023(path, None, tmp_path, name="amz", k_core=0)


@pytest.mark.parametrize("field", ["user_id", "parent_asin", "timestamp"])
def test_missing_field_named(field: str, tmp_path: Path) -> None:
    broken = _review()
    del broken[field]
    path = _write_lines(tmp_path / "r.jsonl", [json.dumps(_review()), json.dumps(broken)])
    with pytest.raises(ValueError, match=rf"r\.jsonl, line 2: missing required field '{field}'"):
        convert_amazon2023(path, None, tmp_path, name="amz", k_core=0)


def test_bad_timestamp_and_blank_lines(tmp_path: Path) -> None:
    lines = [json.dumps(_review()), "", json.dumps(_review(ts="soon"))]
    path = _write_lines(tmp_path / "r.jsonl", lines)
    with pytest.raises(ValueError, match=r"line 3: field 'timestamp' is not an integer"):
        convert_amazon2023(path, None, tmp_path, name="amz", k_core=0)


def test_id_with_tab_or_quote_rejected(tmp_path: Path) -> None:
    lines = [json.dumps(_review()), json.dumps(_review(item='B0"X'))]
    path = _write_lines(tmp_path / "r.jsonl", lines)
    with pytest.raises(ValueError, match=r"r\.jsonl, line 2: field 'parent_asin' holds"):
        convert_amazon2023(path, None, tmp_path, name="amz", k_core=0)


def test_cli_prints_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--reviews", str(REVIEWS), "--meta", str(META), "--name", "amz",
          "--out", str(tmp_path), "--k-core", "3"])
    assert capsys.readouterr().out.strip() == str(EXPECTED_STATS)
    assert (tmp_path / "amz" / "amz.item").is_file()


def _recbole_dataset(out_dir: Path, name: str, load_col: dict):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(
        model="SASRec",
        dataset=name,
        config_dict={
            "data_path": str(out_dir),
            "load_col": load_col,
            "eval_args": {"group_by": "user", "order": "TO",
                          "split": {"LS": "valid_and_test"}, "mode": "full"},
            "train_neg_sample_args": None,
            "loss_type": "CE",
            "MAX_ITEM_LIST_LENGTH": 20,
            "use_gpu": False,
            "show_progress": False,
            "state": "ERROR",
        },
    )
    return create_dataset(config)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # RecBole 1.2.1's own pandas calls
def test_recbole_loads_written_files(converted: tuple[Path, ConversionStats]) -> None:
    out, stats = converted
    load_col = {
        "inter": ["user_id", "item_id", "timestamp"],
        "item": ["item_id", "title", "brand", "categories", "description"],
    }
    dataset = _recbole_dataset(out, "amz", load_col)
    assert dataset.user_num == stats.users + 1  # + RecBole's padding id
    assert dataset.item_num == stats.items + 1
    assert dataset.inter_num == stats.interactions
    # The title with an inch mark (a '"', written as "''") comes back as written.
    guitar = dataset.token2id("item_id", I1)
    title_ids = dataset.item_feat["title"][guitar]
    tokens = [dataset.id2token("title", int(t)) for t in title_ids if int(t) != 0]
    assert tokens == ["Classic", "39''", "Acoustic", "Guitar"]
