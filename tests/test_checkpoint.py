"""Weights-only checkpoints (best and ``-last``) and resuming a run stopped mid-training."""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest
import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_streamrec.utils import get_model, get_trainer

KEYS = {"model", "dataset", "epoch", "cur_step", "best_valid_score", "best_valid_result", "state_dict", "optimizer",
        "other_parameter"}
SCHEDULED = {"TIGER", "STREAMRec"}  # their trainers also keep the learning-rate schedule's position


class Stop(Exception):
    """Stands in for the process being killed."""


@pytest.fixture
def trained_epochs(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None], list[int]]:
    """Record the epoch index of every ``_train_epoch`` call; ``stop_at`` raises :class:`Stop` when it starts.

    RecBole's ``Trainer._train_epoch`` is patched, i.e. the call *after* the resume point was written.
    Calling the returned function again re-arms it (same record, new ``stop_at``).
    """
    epochs: list[int] = []
    original = Trainer._train_epoch

    def arm(stop_at: int | None = None) -> list[int]:
        def train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if epoch_idx == stop_at:
                raise Stop(f"killed at the start of epoch {epoch_idx}")
            epochs.append(epoch_idx)
            return original(self, train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

        monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)
        return epochs

    return arm


def new_trainer(config, train) -> Any:
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)


def load_weights_only(path: str) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # raises on any pickled object
    expected = KEYS | ({"scheduler", "trained_seconds"} if checkpoint["model"] in SCHEDULED else set())
    assert set(checkpoint) - {"finished"} == expected, set(checkpoint)
    return checkpoint


def test_tiger_checkpoints_are_weights_only_and_a_stopped_run_resumes(
    make_config, tiny_data, tmp_path, trained_epochs
) -> None:
    _, _, train, valid, test = tiny_data
    config = make_config("TIGER", epochs=3, checkpoint_dir=str(tmp_path))
    epochs = trained_epochs(stop_at=2)

    first = new_trainer(config, train)
    assert first.saved_model_file == os.path.join(str(tmp_path), "TIGER-tiny.pth")
    assert first.last_checkpoint_file == os.path.join(str(tmp_path), "TIGER-tiny-last.pth")
    with pytest.raises(Stop):
        first.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [0, 1]

    best, last = load_weights_only(first.saved_model_file), load_weights_only(first.last_checkpoint_file)
    assert best["model"] == last["model"] == "TIGER" and last["dataset"] == "tiny"
    assert last["epoch"] == 1, "the resume point is the last finished epoch"
    assert isinstance(last["best_valid_result"]["ndcg@10"], float)
    assert "item_codes" in last["state_dict"], "the semantic IDs travel with the weights"

    second = new_trainer(config, train)
    second.resume_checkpoint(second.last_checkpoint_file)
    assert second.start_epoch == 2
    assert second.best_valid_score == pytest.approx(first.best_valid_score)
    for name, tensor in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
    assert second.optimizer.state_dict()["state"], "the optimizer state (AdamW moments) is restored"

    trained_epochs(stop_at=None)  # this time nothing stops the run
    second.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [0, 1, 2], "the resumed run trains only the missing epoch"
    result = second.evaluate(test, load_best_model=True, show_progress=False)
    assert 0.0 <= result["ndcg@10"] <= 1.0
    load_weights_only(second.saved_model_file)


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_baselines_write_weights_only_checkpoints(make_config, tiny_data, tmp_path, trained_epochs,
                                                  model: str) -> None:
    _, _, train, valid, _ = tiny_data
    config = make_config(model, epochs=2, checkpoint_dir=str(tmp_path))
    epochs = trained_epochs()
    trainer = new_trainer(config, train)
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [0, 1]
    assert load_weights_only(os.path.join(str(tmp_path), f"{model}-tiny.pth"))["model"] == model
    last = load_weights_only(os.path.join(str(tmp_path), f"{model}-tiny-last.pth"))
    assert last["finished"] and last["epoch"] == 1, "a finished run marks its resume point finished"

    resumed = new_trainer(config, train)
    resumed.resume_checkpoint(trainer.last_checkpoint_file)
    assert resumed.start_epoch == 2, "resuming a finished run trains nothing more"
    resumed.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [0, 1]


def test_a_fresh_trainer_evaluates_a_checkpoint_of_a_model_with_other_parameters(make_config, tiny_data, tmp_path):
    """Pop keeps ``max_cnt`` outside its state dict; the checkpoint must carry it (as RecBole's does)."""
    _, _, train, valid, _ = tiny_data
    config = make_config("Pop", epochs=1, checkpoint_dir=str(tmp_path))
    trainer = new_trainer(config, train)
    trainer.fit(train, valid, saved=True, show_progress=False)
    expected = trainer.evaluate(valid, load_best_model=True)
    fresh = new_trainer(config, train)  # as --eval_only or bench/table2.py's timed pass do: nothing trained here
    assert fresh.model.max_cnt is None
    assert fresh.evaluate(valid, load_best_model=True) == expected


def test_weights_that_do_not_fit_are_named_on_evaluate_and_resume(make_config, tiny_data, tmp_path):
    """``--eval_only`` or ``--resume`` with a config that builds another model: one line naming file and key."""
    from recbole_streamrec.errors import UserError

    _, _, train, valid, _ = tiny_data
    trained = new_trainer(make_config("TIGER", epochs=1, recency_embedding=True, checkpoint_dir=str(tmp_path)), train)
    trained.fit(train, valid, saved=True, show_progress=False)
    plain = new_trainer(make_config("TIGER", epochs=1, checkpoint_dir=str(tmp_path)), train)
    assert plain.saved_model_file == trained.saved_model_file, "the same run name, the key forgotten"
    with pytest.raises(UserError, match=r"TIGER-tiny\.pth does not fit this model \(first mismatch: "
                                        r"recency_embedding\.weight\)"):
        plain.evaluate(valid, load_best_model=True)
    with pytest.raises(UserError, match=r"TIGER-tiny-last\.pth does not fit this model"):
        plain.resume_checkpoint(trained.last_checkpoint_file)


def test_tiger_init_checkpoint_starts_a_new_run_from_the_weights_only(make_config, tiny_data, tmp_path, trained_epochs):
    """``init_checkpoint``: another run's weights, a fresh optimiser and epoch counter; wrong files are named."""
    from recbole_streamrec.errors import UserError

    _, _, train, valid, _ = tiny_data
    first = new_trainer(make_config("TIGER", epochs=1, checkpoint_dir=str(tmp_path / "a")), train)
    first.fit(train, valid, saved=True, show_progress=False)
    weights = load_weights_only(first.saved_model_file)["state_dict"]

    epochs = trained_epochs()
    config = make_config("TIGER", epochs=1, checkpoint_dir=str(tmp_path / "b"), init_checkpoint=first.saved_model_file)
    second = new_trainer(config, train)
    started_from: dict[str, torch.Tensor] = {}
    original = second._train_epoch

    def train_epoch(train_data, epoch_idx, **kwargs):
        started_from.update({k: v.clone() for k, v in second.model.state_dict().items()})
        assert not second.optimizer.state_dict()["state"], "the optimiser starts afresh"
        return original(train_data, epoch_idx, **kwargs)

    second._train_epoch = train_epoch
    second.fit(train, valid, saved=True, show_progress=False)
    assert epochs[-1:] == [0], "the epoch counter starts afresh"
    for name, tensor in weights.items():
        torch.testing.assert_close(started_from[name], tensor, atol=0, rtol=0, msg=name)

    sasrec = new_trainer(make_config("SASRec", epochs=1, checkpoint_dir=str(tmp_path / "c")), train)
    sasrec.fit(train, valid, saved=True, show_progress=False)
    wrong_model = new_trainer(make_config("TIGER", checkpoint_dir=str(tmp_path / "d"),
                                          init_checkpoint=sasrec.saved_model_file), train)
    with pytest.raises(UserError, match=r"SASRec-tiny\.pth holds a SASRec model, not TIGER"):
        wrong_model.fit(train, valid, saved=True, show_progress=False)
    wider = new_trainer(make_config("TIGER", d_model=48, d_kv=12, checkpoint_dir=str(tmp_path / "e"),
                                    init_checkpoint=first.saved_model_file), train)
    with pytest.raises(UserError, match=r"TIGER-tiny\.pth does not fit this model \(first mismatch: "):
        wider.fit(train, valid, saved=True, show_progress=False)


def test_streamrec_starts_from_a_trained_tiger(make_config, tiny_data, tmp_path):
    """``init_checkpoint`` of a TIGER run with ``stages: [sft]``: that TIGER is stage 1 — both decoders and π_ref
    are its decoder, so the hand-over's direct decoder scores exactly what TIGER scores."""
    from recbole_streamrec.errors import UserError
    from recbole_streamrec.trainer.checkpoint import load_checkpoint, plain_results

    _, _, train, valid, _ = tiny_data
    tiger = new_trainer(make_config("TIGER", epochs=1, checkpoint_dir=str(tmp_path)), train)
    tiger.fit(train, valid, saved=True, show_progress=False)
    tiger_valid = plain_results(tiger.evaluate(valid, load_best_model=True))
    weights = load_weights_only(tiger.saved_model_file)["state_dict"]

    keys = {"stages": ["sft"], "sft_rounds": 1, "sft_epochs_per_round": 1, "reasoning_steps": 2,
            "rl_hard_negatives": 5, "dpo_negative_pool": 3, "reasoning_decoding": "greedy",
            "checkpoint_dir": str(tmp_path), "init_checkpoint": tiger.saved_model_file}
    stream = new_trainer(make_config("STREAMRec", **keys), train)
    stream.fit(train, valid, saved=True, show_progress=False)
    assert stream.direct_valid_result == tiger_valid
    reference = load_checkpoint(stream._reference_file())["state_dict"]
    for name, tensor in weights.items():
        torch.testing.assert_close(reference[name], tensor, atol=0, rtol=0, msg=name)
        if name.startswith("t5.decoder."):
            torch.testing.assert_close(reference["direct_decoder." + name[len("t5.decoder."):]], tensor,
                                       atol=0, rtol=0, msg=name)

    wider = new_trainer(make_config("STREAMRec", **{**keys, "d_model": 48, "d_kv": 12}), train)
    with pytest.raises(UserError, match=r"TIGER-tiny\.pth does not fit this model \(first mismatch: "):
        wider.fit(train, valid, saved=True, show_progress=False)
    # a key on one side only: refused both ways, never dropped in silence
    recent = new_trainer(make_config("STREAMRec", **{**keys, "recency_embedding": True}), train)
    with pytest.raises(UserError, match=r"first mismatch: recency_embedding\.weight\).*another recency_embedding"):
        recent.fit(train, valid, saved=True, show_progress=False)
    recent_tiger = new_trainer(make_config("TIGER", epochs=1, recency_embedding=True,
                                           checkpoint_dir=str(tmp_path / "r")), train)
    recent_tiger.fit(train, valid, saved=True, show_progress=False)
    plain = new_trainer(make_config("STREAMRec", **{**keys, "init_checkpoint": recent_tiger.saved_model_file}), train)
    with pytest.raises(UserError, match=r"first mismatch: recency_embedding\.weight\)"):
        plain.fit(train, valid, saved=True, show_progress=False)
    both = new_trainer(make_config("STREAMRec", **{**keys, "recency_embedding": True,
                                                   "checkpoint_dir": str(tmp_path / "b"),
                                                   "init_checkpoint": recent_tiger.saved_model_file}), train)
    both.fit(train, valid, saved=True, show_progress=False)
    trained = load_weights_only(recent_tiger.saved_model_file)["state_dict"]["recency_embedding.weight"]
    assert trained.any(), "one TIGER epoch moves it off zero"
    torch.testing.assert_close(load_checkpoint(both._reference_file())["state_dict"]["recency_embedding.weight"],
                               trained, atol=0, rtol=0)
