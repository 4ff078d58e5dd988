"""``--rank_file``: each test user's rank of the held-out item, and the paired bootstrap that compares two runs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_streamrec.errors import UserError
from recbole_streamrec.quick_start import run
from recbole_streamrec.user_ranks import ranks_from_topk

from conftest import DATASET
from test_bench_table2 import bench_script


@pytest.fixture(scope="module")
def paired():
    yield from bench_script("paired_bootstrap")


def compared(paired, files: list[str], names: list[str], samples: int) -> list[dict]:
    return paired.compare(files, [paired.read_ranks(f) for f in files], names, k=10, samples=samples)


def write(path: Path, ranks: dict[str, int]) -> str:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("user", "rank"), *ranks.items()])
    return str(path)


def test_ranks_from_topk_worked_by_hand() -> None:
    # K = 4: a hit flag per position, then the user's number of positives
    topk = torch.tensor([[0, 0, 1, 0, 1], [1, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 1, 1]])
    assert ranks_from_topk(topk).tolist() == [3, 1, 0, 4]


def assert_ranks_give(path: Path, metrics: dict) -> np.ndarray:
    """The rank file's per-user NDCG@k and Recall@k average to the run's reported ``metrics``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ranks = np.array([int(r["rank"]) for r in rows])
    assert len({r["user"] for r in rows}) == len(rows) > 0
    assert (ranks > 0).any(), "the check below needs some hits"
    metrics = {k: float(v) for k, v in dict(metrics).items()}
    for k in (5, 10):
        hit = (ranks >= 1) & (ranks <= k)
        ndcg = np.where(hit, 1 / np.log2(np.maximum(ranks, 1) + 1), 0.0)
        assert ndcg.mean() == pytest.approx(metrics[f"ndcg@{k}"], abs=1e-4)  # RecBole rounds to 4 places
        assert hit.mean() == pytest.approx(metrics[f"recall@{k}"], abs=1e-4)
    return ranks


def test_a_runs_rank_files_give_back_its_test_and_validation_metrics(run_overrides, tmp_path) -> None:
    test_path, valid_path = tmp_path / "ranks.csv", tmp_path / "valid-ranks.csv"
    result = run("SASRec", DATASET, config_dict=run_overrides("SASRec", epochs=3), rank_file=str(test_path),
                 valid_rank_file=str(valid_path))
    test = assert_ranks_give(test_path, result["test_result"])
    valid = assert_ranks_give(valid_path, result["valid_result"])
    assert not np.array_equal(test, valid)  # two splits, two files


@pytest.mark.parametrize("flag", ["rank_file", "valid_rank_file"])
def test_a_rank_file_needs_one_process(run_overrides, tmp_path, flag: str) -> None:
    with pytest.raises(UserError, match=f"--{flag}: needs a one-process run"):
        run("SASRec", DATASET, config_dict=run_overrides("SASRec", nproc=2), **{flag: str(tmp_path / "r.csv")})


def test_paired_bootstrap_sees_a_real_difference_and_no_difference(paired, tmp_path) -> None:
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(2000)]
    base = {u: int(r) for u, r in zip(users, rng.integers(0, 21, size=len(users)))}  # rank 0..20
    better = {u: (1 if i % 4 == 0 else r) for i, (u, r) in enumerate(base.items())}  # a quarter moved to rank 1
    a, b = write(tmp_path / "a.csv", base), write(tmp_path / "b.csv", better)
    same = compared(paired, [a, a], ["a", "a"], samples=500)
    assert all(r["diff"] == 0 and r["low"] == 0 == r["high"] and r["p"] == 1.0 for r in same)
    rows = {r["metric"]: r for r in compared(paired, [a, b], ["a", "b"], samples=500)}
    ndcg = rows["ndcg@10"]
    assert ndcg["diff"] == pytest.approx(ndcg["b"] - ndcg["a"]) and ndcg["diff"] > 0
    assert 0 < ndcg["low"] < ndcg["diff"] < ndcg["high"] and ndcg["p"] < 0.01
    # by hand: the moved users' NDCG@10 becomes 1; the others' is unchanged
    moved = [u for i, u in enumerate(users) if i % 4 == 0]
    gain = sum(1 - (1 / np.log2(base[u] + 1) if 1 <= base[u] <= 10 else 0) for u in moved) / len(users)
    assert ndcg["diff"] == pytest.approx(gain)


def test_paired_bootstrap_names_the_split_of_its_rank_files(paired, tmp_path, capsys) -> None:
    a = write(tmp_path / "a.csv", {"u1": 1, "u2": 0})
    b = write(tmp_path / "b.csv", {"u1": 2, "u2": 1})
    assert paired.main([a, b, "--samples", "10"]) == 0
    assert capsys.readouterr().out.startswith("Paired bootstrap over test users (10 resamples)")
    assert paired.main([a, b, "--samples", "10", "--split", "validation"]) == 0
    assert capsys.readouterr().out.startswith("Paired bootstrap over validation users (10 resamples)")


def test_paired_bootstrap_refuses_runs_on_other_users(paired, tmp_path) -> None:
    a = write(tmp_path / "a.csv", {"u1": 1, "u2": 0})
    b = write(tmp_path / "b.csv", {"u1": 1, "u3": 0})
    with pytest.raises(SystemExit, match="b.csv: its users are not those of"):
        compared(paired, [a, b], ["a", "b"], samples=10)
    bad = tmp_path / "bad.csv"
    bad.write_text("user,score\nu1,0.5\n")
    with pytest.raises(SystemExit, match="bad.csv: not a rank file"):
        paired.read_ranks(str(bad))


def test_by_rank_counts_the_users_at_each_rank(paired, tmp_path) -> None:
    a = write(tmp_path / "a.csv", {"u1": 1, "u2": 3, "u3": 0, "u4": 1})
    b = write(tmp_path / "b.csv", {"u1": 2, "u2": 2, "u3": 3, "u4": 0})
    lines = paired.by_rank([paired.read_ranks(a), paired.read_ranks(b)], ["A", "B"]).splitlines()
    assert lines[2] == "| run | 1 | 2 | 3 | in the top-K |"
    assert lines[4:] == ["| A | 2 | 0 | 1 | 3 |", "| B | 0 | 2 | 1 | 3 |"]


@pytest.fixture(scope="module")
def breakdown():
    yield from bench_script("split_breakdown")


def test_split_breakdown_rebuilds_the_split_and_groups_users(breakdown, tmp_path) -> None:
    # u1: 5 items (a b c | d valid | e test); u2: 6 items, its last two out of time order in the file
    inter = tmp_path / "d.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                     + "".join(f"u1\t{item}\t{t}\n" for t, item in enumerate("abcde"))
                     + "u2\ta\t0\nu2\tb\t1\nu2\tc\t2\nu2\tf\t3\nu2\tg\t5\nu2\ta\t4\n")
    split = breakdown.read_split(str(inter))
    assert split["users"] == {"u1": {"valid": "d", "test": "e", "length": 5},
                              "u2": {"valid": "a", "test": "g", "length": 6}}
    assert split["popularity"] == {"a": 2, "b": 2, "c": 2, "f": 1}  # training part only
    runs = {"A": ({"u1": 1, "u2": 0}, {"u1": 0, "u2": 3})}
    result = breakdown.breakdown(split, runs)["runs"]["A"]
    assert result["all"] == {"valid": 0.5, "test": pytest.approx(0.5 / np.log2(4))}
    assert result["length"]["5"] == {"valid": 1.0, "valid_share": 1.0, "test": 0.0, "test_share": 0.0}
    assert result["length"]["6"]["test_share"] == 1.0
    # validation targets: d (0 training interactions) and a (2); test targets: e (0) and g (0)
    groups = breakdown.breakdown(split, runs)["groups"]
    assert groups["popularity"] == {"0–2": {"valid_users": 2, "test_users": 2}}
    assert groups["length"] == {"5": {"valid_users": 1, "test_users": 1}, "6": {"valid_users": 1, "test_users": 1}}
    table = breakdown.markdown(breakdown.breakdown(split, runs))
    assert "| A | 0.5000 | 0.2500 | 0.50 |" in table
    test_only = breakdown.breakdown(split, {"T": (None, {"u1": 1, "u2": 0})})
    assert test_only["runs"]["T"]["all"] == {"test": 0.5}
    assert "| T | — | 0.5000 | — |" in breakdown.markdown(test_only)
    assert breakdown.parse_run("T=t.csv") == ("T", None, "t.csv")
    recall = breakdown.breakdown(split, runs, k=10, metric="recall")
    assert recall["runs"]["A"]["all"] == {"valid": 0.5, "test": 0.5}
    table = breakdown.markdown(recall)
    assert "| A | 0.5000 | 0.5000 | 1.00 |" in table and "Recall@10 of each split" in table
    with pytest.raises(SystemExit, match="run B: its rank files and the .inter file disagree on 1 users"):
        breakdown.breakdown(split, {"B": ({"u1": 1}, {"u1": 0, "u2": 3})})
    with pytest.raises(SystemExit, match="expected NAME=VALID_RANKS.csv,TEST_RANKS.csv"):
        breakdown.parse_run("A=a.csv,b.csv,c.csv")


@pytest.fixture(scope="module")
def drop():
    yield from bench_script("drop_last_item")


def test_drop_last_item_hides_the_most_recent_item_of_each_history(drop) -> None:
    from recbole.data.interaction import Interaction

    class Recorder:
        ITEM_SEQ, ITEM_SEQ_LEN = "item_id_list", "item_length"

        def full_sort_predict(self, interaction):
            self.seen = interaction[self.ITEM_SEQ].tolist(), interaction[self.ITEM_SEQ_LEN].tolist()
            return "scores"

    model_class = drop.without_last_item(Recorder)
    model = model_class()
    batch = Interaction({"item_id_list": torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0]]),
                         "item_length": torch.tensor([3, 1, 2])})
    assert model.full_sort_predict(batch) == "scores" and model_class.__name__ == "Recorder"
    assert model.seen == ([[1, 2, 0, 0], [4, 0, 0, 0], [5, 0, 0, 0]], [2, 1, 1])  # a one-item history is kept


def test_a_chain_model_loses_its_hits_when_the_last_item_is_hidden(drop, run_overrides, tmp_path, monkeypatch) -> None:
    # tiny's next item follows from the last one: SASRec learns that, and without the last item it cannot
    keys = run_overrides("SASRec", epochs=15, learning_rate=0.01, checkpoint_tag="drop-last")
    hidden = tmp_path / "hidden.csv"
    result = run("SASRec", DATASET, config_dict=keys)
    get_model = drop.quick_start.get_model
    monkeypatch.setattr(drop.quick_start, "get_model", lambda name: drop.without_last_item(get_model(name)))
    dropped = run("SASRec", DATASET, config_dict=keys, eval_only=True, rank_file=str(hidden))
    ranks = assert_ranks_give(hidden, dropped["test_result"])
    assert result["test_result"]["ndcg@10"] > 0.9 > 0.7 > dropped["test_result"]["ndcg@10"]
    assert (ranks != 1).all()  # its first choice is the hidden item, masked as history: the held-out one is never first
    monkeypatch.setattr(sys, "argv", ["drop_last_item.py", "--model=SASRec"])
    assert drop.main(["--model=SASRec"]) == 2  # evaluation only


@pytest.fixture(scope="module")
def top_items():
    yield from bench_script("top_items")


def test_top_items_lists_what_ranks_above_the_held_out_item(top_items, run_overrides, workdir, tmp_path,
                                                           monkeypatch) -> None:
    from conftest import user_sequence

    keys = run_overrides("SASRec", epochs=3, checkpoint_tag="top-items")
    run("SASRec", DATASET, config_dict=keys)
    cli = [f"--{k}={v}" for k, v in keys.items() if k in ("data_path", "checkpoint_dir", "checkpoint_tag", "seed",
                                                          "threads", "eval_batch_size", "state", "use_gpu")]
    ranks, items = tmp_path / "ranks.csv", tmp_path / "top.csv"
    argv = ["--model=SASRec", f"--dataset={DATASET}", *cli, "--eval_only", f"--rank_file={ranks}",
            f"--items_file={items}"]
    monkeypatch.setattr(sys, "argv", ["top_items.py", *argv])
    assert top_items.main(argv) == 0
    with open(items, newline="") as f:
        top = {row["user"]: row["items"].split() for row in csv.DictReader(f)}
    with open(ranks, newline="") as f:
        rank = {row["user"]: int(row["rank"]) for row in csv.DictReader(f)}
    assert top.keys() == rank.keys() and all(len(v) == 10 for v in top.values())
    hits = [u for u, r in rank.items() if r >= 1]
    assert hits, "the check needs some hits"
    for user in hits:  # the held-out (test) item is the user's last one, at the rank the rank file says
        assert top[user][rank[user] - 1] == user_sequence(int(user[1:]))[-1]
    assert top_items.main(["--model=SASRec", "--eval_only"]) == 2  # no --items_file or --rank_file


def test_top_items_summary_counts_what_sits_at_rank_1(top_items, tmp_path, capsys) -> None:
    inter = tmp_path / "d.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                     + "".join(f"u{u}\t{item}\t{t}\n" for u in range(3) for t, item in enumerate("abcd" + "xyz"[u])))
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\na\tA thing\nx\tAn x\n")
    items, ranks = tmp_path / "top.csv", tmp_path / "ranks.csv"
    items.write_text("user,items\nu0,x a b\nu1,x b a\nu2,a x b\n")
    ranks.write_text("user,rank\nu0,1\nu1,0\nu2,2\n")  # test items: x, y, z; u0's rank-1 x is its test item
    assert top_items.main(["--summary", "--inter", str(inter), f"M={items},{ranks}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Users: 3. Distinct rank-1 items: M 2.")
    # x: rank 1 for u0 and u1, u0's test item; validation targets are d (all three users), test targets x, y, z
    assert "| M | x | 2 | 1 | 0 | 1 | 0 | An x |" in out and "| M | a | 1 | 0 | 0 | 0 | 3 | A thing |" in out
    assert top_items.main(["--summary", f"M={items},{ranks}"]) == 2  # no --inter


def test_a_rank_file_needs_one_row_per_user_and_names_its_split() -> None:
    import types

    from recbole_streamrec.user_ranks import check_one_row_per_user

    # an inter_feat of three rows, user 1 twice (a dict whose len() is its rows, as RecBole's Interaction)
    rows = type("Rows", (dict,), {"__len__": lambda self: 3})({"user_id": torch.tensor([1, 1, 2])})
    data = types.SimpleNamespace(_dataset=types.SimpleNamespace(inter_feat=rows, uid_field="user_id", dataset_name="d"))
    with pytest.raises(UserError, match=r"^--valid_rank_file: the validation split of d has 3 rows for 2 users"):
        check_one_row_per_user(data, "--valid_rank_file", "validation")
    with pytest.raises(UserError, match=r"^--rank_file: the test split of d has 3 rows for 2 users"):
        check_one_row_per_user(data)
