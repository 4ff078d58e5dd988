"""Bad input stops early with one line naming the file, line or key (issue 11): one test per kind of input.

Every dataset here is made by the test itself under ``tmp_path`` (a copy of conftest's ``tiny`` or a variant);
no test trains a model.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import recbole_streamrec  # noqa: F401  (numpy-2 shims before RecBole)
from conftest import DATASET, overrides, write_tiny_dataset
from recbole_streamrec.config import Config
from recbole_streamrec.errors import UserError
from recbole_streamrec.quick_start import load_data, run
from recbole_streamrec.utils import get_model

ROOT = Path(__file__).resolve().parents[1]
HEADER = "user_id:token\titem_id:token\ttimestamp:float"


# ---- helpers -------------------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of ``tiny`` under ``tmp_path/data`` (RecBole's ``log/`` lands in ``tmp_path`` too)."""
    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(tmp_path / "data")
    return tmp_path


@pytest.fixture
def config_for(root: Path) -> Callable[..., Config]:
    """``config_for("SASRec", dataset="bad")`` → a Config reading ``root/data`` and caching in ``root/cache``."""

    def build(model: str = "SASRec", dataset: str = DATASET, files: list[str] | None = None, **extra: Any) -> Config:
        return Config(model=model, dataset=dataset, config_file_list=files, config_dict=overrides(root, model, **extra))

    return build


def write_inter(root: Path, name: str, text: str) -> None:
    (root / "data" / name).mkdir(parents=True, exist_ok=True)
    (root / "data" / name / f"{name}.inter").write_text(text, encoding="utf-8")


def argv(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """The command line RecBole's Config reads (``--key=value``)."""
    monkeypatch.setattr(sys, "argv", ["run_recbole_streamrec.py", *args])


@pytest.fixture(scope="module")
def script():
    """``run_recbole_streamrec.py`` imported as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("run_script_under_test", ROOT / "run_recbole_streamrec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- list-valued keys on the command line --------------------------------------------------------------
@pytest.mark.parametrize("arg, expected", [
    ("--stages=[rl]", ["rl"]), ("--stages=[pretrain,rl]", ["pretrain", "rl"]),
    ("--stages=pretrain,rl", ["pretrain", "rl"]), ("--stages=[pretrain, sft]", ["pretrain", "sft"]),
    ("--stages=sft", ["sft"]), ("--stages=['rl']", ["rl"]),
])
def test_stages_forms_are_lists(config_for, monkeypatch: pytest.MonkeyPatch, arg: str, expected: list[str]) -> None:
    argv(monkeypatch, arg)
    assert config_for("STREAMRec")["stages"] == expected


def test_stages_yaml_literal_and_other_list_keys(config_for, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "s.yaml").write_text("stages: [pretrain, rl]  # the pure-RL schedule\n")
    argv(monkeypatch, "--metrics=[Recall,NDCG]", "--rqvae_hidden_dims=[64,32]")
    config = config_for("STREAMRec", files=[str(root / "s.yaml")])
    assert config["stages"] == ["pretrain", "rl"]
    assert config["metrics"] == ["Recall", "NDCG"] and config["rqvae_hidden_dims"] == [64, 32]


def test_unknown_stage_names_the_key(config_for, monkeypatch: pytest.MonkeyPatch) -> None:
    argv(monkeypatch, "--stages=[pretrain,rlhf]")
    with pytest.raises(UserError, match=r"stages=\['pretrain', 'rlhf'\] \(command line\).*pretrain, sft, rl"):
        config_for("STREAMRec")


# ---- config values checked at start-up ---------------------------------------------------------------
@pytest.mark.parametrize("arg, message", [
    ("--reasoning_steps=-1", r"reasoning_steps=-1 \(command line\) must be an integer >= 0"),
    ("--reasoning_steps=2.5", r"reasoning_steps=2.5 .* integer >= 0"),
    ("--rl_group_size=1", r"rl_group_size=1 .* integer >= 2"),
    ("--dropout_rate=1.5", r"dropout_rate=1.5 .* \[0, 1\)"),
    ("--sft_learning_rate=0", r"sft_learning_rate=0 .* > 0"),
    ("--reasoning_decoding=beem", r"reasoning_decoding='beem' .* greedy, beam, sample, joint, oracle"),
    ("--beam_size=5", r"beam_size=5 .* largest topk \(10\)"),
    ("--rl_advantage=sum", r"rl_advantage='sum' .* total, per_reward"),
    ("--rl_credit=tokens", r"rl_credit='tokens' .* rollout, split"),
    ("--trace_gate=closed", r"trace_gate='closed' .* a number \(the gate's starting bias"),
    ("--trace_gate_learning_rate=0", r"trace_gate_learning_rate=0 .* > 0"),
    ("--item_beam=items", r"item_beam='items' .* pairs, distinct"),
])
def test_bad_config_value_names_key_and_range(config_for, monkeypatch: pytest.MonkeyPatch, arg: str,
                                              message: str) -> None:
    argv(monkeypatch, arg)
    with pytest.raises(UserError, match=message):
        config_for("STREAMRec")


def test_yaml_syntax_error_names_file_and_line(config_for, root: Path) -> None:
    bad = root / "bad.yaml"
    bad.write_text("epochs: 3\nstages: [pretrain, rl\nreasoning_steps: 4\n")
    with pytest.raises(UserError, match=r"bad\.yaml, line \d+, column \d+: YAML syntax error"):
        config_for("STREAMRec", files=[str(bad)])


def test_missing_config_file_is_named(config_for, root: Path) -> None:
    with pytest.raises(UserError, match=r"config file not found: .*nope\.yaml"):
        config_for("SASRec", files=[str(root / "nope.yaml")])


# ---- --model typo ------------------------------------------------------------------------------------
def test_model_typo_names_it_and_close_matches(config_for) -> None:
    with pytest.raises(UserError, match=r"unknown model 'TIGRE' \(did you mean TIGER\?\).*STREAMRec"):
        get_model("TIGRE")
    with pytest.raises(UserError, match="TIGRE"):
        config_for("TIGRE")


# ---- dataset files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("row, message", [
    ("u9\ti01", r"line 4: 2 fields, but the header has 3"),
    ("u9\ti01\t3\t7", r"line 4: 4 fields, but the header has 3"),
    ("u9\ti01\tlate", r"line 4: field 'timestamp' is 'late', not a number"),
])
def test_inter_row_with_wrong_columns_names_file_and_line(config_for, root: Path, row: str, message: str) -> None:
    write_inter(root, "bad", "\n".join([HEADER, "u1\ti01\t0", "u1\ti02\t1", row, "u1\ti03\t2"]) + "\n")
    with pytest.raises(UserError, match=r"bad\.inter, " + message):
        load_data(config_for("SASRec", dataset="bad"))


def test_inter_without_header_names_file(config_for, root: Path) -> None:
    write_inter(root, "nohead", "u1\ti01\t0\nu1\ti02\t1\nu1\ti03\t2\n")
    with pytest.raises(UserError, match=r"nohead\.inter, line 1: header column 'u1' is not name:type.*header"):
        load_data(config_for("SASRec", dataset="nohead"))


def test_inter_with_header_only_names_file(config_for, root: Path) -> None:
    write_inter(root, "empty", HEADER + "\n")
    with pytest.raises(UserError, match=r"empty\.inter: header only, no rows"):
        load_data(config_for("SASRec", dataset="empty"))


def test_no_evaluable_users_stops_with_a_message(config_for, root: Path) -> None:
    rows = [f"u{u}\ti{(u + t) % 9:02d}\t{t}" for u in range(20) for t in range(2)]  # 2 interactions each
    write_inter(root, "few", "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(UserError, match=r"dataset few: no user can be evaluated: none of its 20 users has the 3"):
        load_data(config_for("SASRec", dataset="few"))


# ---- checkpoints ---------------------------------------------------------------------------------------
def test_truncated_last_checkpoint_with_resume_names_path(root: Path) -> None:
    config = {**overrides(root, "Pop"), "checkpoint_dir": str(root / "ckpt")}
    last = root / "ckpt" / f"Pop-{DATASET}-last.pth"
    last.parent.mkdir()
    torch.save({"model": "Pop", "state_dict": {"w": torch.zeros(4096)}}, last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    message = rf"{re.escape(str(last))}: not a readable checkpoint, truncated or corrupt \(torch: .*\).*delete it"
    with pytest.raises(UserError, match=message):
        run("Pop", DATASET, config_dict=config, resume=True)


# ---- the run script --------------------------------------------------------------------------------------
def test_run_script_own_flags_raise_no_recbole_warning(config_for, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    argv(monkeypatch, "--resume", "--eval_only", "--debug", "--result_file=r.json", "--config_files=a.yaml",
         "-m", "SASRec", "--epochs=2")
    with caplog.at_level(logging.WARNING):
        config = config_for("SASRec")
    assert config["epochs"] == 2
    assert not [r for r in caplog.records if "will not be used" in r.getMessage()], caplog.text
    argv(monkeypatch, "--epochs", "2")  # RecBole's warning stays for what it really ignores
    with caplog.at_level(logging.WARNING):
        config_for("SASRec")
    assert "command line args [--epochs 2] will not be used" in caplog.text


def test_run_script_prints_one_line_and_debug_keeps_traceback(script, root: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    argv(monkeypatch, "--model=TIGRE")
    assert script.main() == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model: unknown model 'TIGRE' (did you mean TIGER?)") and err.count("\n") == 1
    assert "Traceback" not in err
    argv(monkeypatch, "--model=TIGRE", "--debug")
    with pytest.raises(UserError, match="TIGRE"):
        script.main()


@pytest.mark.parametrize("flag", ["--result_file", "--rank_file", "--valid_rank_file"])
def test_an_output_file_in_a_missing_folder_is_refused_before_the_run(script, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture, flag: str) -> None:
    argv(monkeypatch, "--model=SASRec", f"{flag}=no/such/folder/out")
    monkeypatch.setattr(script, "run", lambda *a, **k: pytest.fail("the run must not start"))
    assert script.main() == 2
    assert capsys.readouterr().err == f"error: {flag}=no/such/folder/out: the folder no/such/folder does not exist\n"


def readme_commands() -> list[list[str]]:
    """The ``python run_recbole_streamrec.py …`` commands of README.md, as argument lists."""
    commands = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if "run_recbole_streamrec.py" not in line:
            continue
        words = shlex.split(line.split("&&")[-1], comments=True)
        if words[:2] == ["python", "run_recbole_streamrec.py"]:
            commands.append(words[2:])
    return commands


def test_readme_commands_parse(script, root: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    """Every README command's arguments give a valid Config (nothing is trained; no shared data is read)."""
    commands = readme_commands()
    assert len(commands) >= 5 and any(a.startswith("--stages=") for c in commands for a in c)
    monkeypatch.chdir(ROOT)  # the README's relative paths (properties/quick.yaml) are from the checkout
    for words in commands:
        words = [f"--data_path={root / 'data'}" if w.startswith("--data_path=") else w for w in words]
        argv(monkeypatch, *words)
        args = script.parse_args(words)
        files = args.config_files.replace(",", " ").split() if args.config_files else None
        with caplog.at_level(logging.WARNING):
            config = Config(model=args.model, dataset=args.dataset, config_file_list=files,
                            config_dict={"checkpoint_dir": str(root / "ckpt"), "cache_dir": str(root / "cache")})
        assert "will not be used" not in caplog.text, words
        if config["model"] == "STREAMRec":
            stages = [w.split("=", 1)[1] for w in words if w.startswith("--stages=")]
            expected = stages[0].strip("[]").split(",") if stages else ["pretrain", "sft", "rl"]
            assert config["stages"] == expected, words


# ---- the Amazon converter writes all or nothing --------------------------------------------------------
def test_converter_failure_leaves_old_dataset(tmp_path: Path) -> None:
    from recbole_streamrec.data.amazon_reviews import convert_amazon2023

    fixtures = ROOT / "tests" / "fixtures" / "amazon2023"
    convert_amazon2023(fixtures / "reviews.jsonl", fixtures / "meta.jsonl", tmp_path, name="amz", k_core=3)
    before = {p.name: p.read_bytes() for p in (tmp_path / "amz").iterdir()}
    bad_meta = tmp_path / "meta.jsonl"
    bad_meta.write_text((fixtures / "meta.jsonl").read_text() + json.dumps({"title": "no asin"}) + "\n")
    with pytest.raises(ValueError, match=r"meta\.jsonl, line \d+: missing required field 'parent_asin'"):
        convert_amazon2023(fixtures / "reviews.jsonl", bad_meta, tmp_path, name="amz", k_core=0)  # a new .inter
    assert {p.name: p.read_bytes() for p in (tmp_path / "amz").iterdir()} == before
