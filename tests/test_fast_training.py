"""Fast training: no padding work, length buckets, precision for the hardware, the lr schedule, weight decay."""

from __future__ import annotations

import math

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_streamrec.data.batching import LengthBucketBatchSampler, LengthBucketTrainDataLoader
from recbole_streamrec.quick_start import load_data
from recbole_streamrec.trainer import recipe
from recbole_streamrec.trainer.recipe import Recipe, decay_groups, lr_factor, resolve_precision
from recbole_streamrec.utils import get_model, get_trainer


def mixed_batch(train, n: int = 48) -> Interaction:
    """The first ``n`` training rows in dataset order: histories of many lengths, padded to 20."""
    batch = train._dataset.inter_feat[:n]
    lengths = batch["item_length"]
    assert lengths.min() < lengths.max() < batch["item_id_list"].shape[1], "the batch must need padding"
    return batch


# ---- the padding cut ----------------------------------------------------------------------------------
def loss_and_grads(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("recency", [False, True])
def test_cutting_padding_keeps_the_loss_and_the_gradients(make_tiger, tiny_data, recency: bool) -> None:
    model, batch = make_tiger(recency_embedding=recency).train(), mixed_batch(tiny_data[2])
    if recency:  # non-zero, so a place that moved with the cut would change the loss
        torch.nn.init.normal_(model.recency_embedding.weight)
    cut_ids, _ = model.history_tokens(batch["item_id_list"], batch["item_length"])
    assert cut_ids.shape[1] == int(batch["item_length"].max()) * model.n_codes + 1 < 20 * model.n_codes + 1
    loss_cut, grads_cut = loss_and_grads(model, batch)
    model.full_padding = True
    full_ids, _ = model.history_tokens(batch["item_id_list"], batch["item_length"])
    assert full_ids.shape[1] == 20 * model.n_codes + 1
    loss_full, grads_full = loss_and_grads(model, batch)
    torch.testing.assert_close(loss_cut, loss_full, rtol=1e-5, atol=1e-6)
    assert grads_cut.keys() == grads_full.keys() and len(grads_cut) > 10
    for name in grads_cut:
        torch.testing.assert_close(grads_cut[name], grads_full[name], rtol=1e-4, atol=1e-6, msg=name)


def test_cutting_padding_keeps_the_evaluation_of_a_trained_model(make_tiger, tiny_data, tiny_batch) -> None:
    model, train = make_tiger().train(), tiny_data[2]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _, batch in zip(range(20), train):
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
    model.eval()
    cut = model.full_sort_predict(tiny_batch)
    model.full_padding = True
    full = model.full_sort_predict(tiny_batch)
    assert torch.equal(torch.isfinite(cut), torch.isfinite(full)), "the same items in the beam"
    torch.testing.assert_close(cut[torch.isfinite(cut)], full[torch.isfinite(full)], rtol=1e-4, atol=1e-5)
    assert torch.equal(cut.topk(10).indices, full.topk(10).indices)


# ---- length buckets -----------------------------------------------------------------------------------
LENGTHS = torch.tensor([1, 5, 2, 2, 7, 1, 3, 5, 5, 1, 2, 8, 8, 3, 1, 6, 2, 4, 4, 1])


def epoch_batches(sampler) -> list[list[int]]:
    return [list(b) for b in sampler]


def test_length_buckets_cover_every_row_once_with_similar_lengths() -> None:
    for width in (1, 3):
        sampler = LengthBucketBatchSampler(LENGTHS, 3, bucket_width=width, seed=7)
        for _ in range(3):  # every epoch
            batches = epoch_batches(sampler)
            assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
            assert len(batches) == len(sampler)
            for batch in batches:
                assert len(batch) <= 3
                assert len({(int(LENGTHS[i]) - 1) // width for i in batch}) == 1, "one bucket per batch"


def test_length_buckets_are_shuffled_and_reproducible_from_the_seed() -> None:
    first = [epoch_batches(LengthBucketBatchSampler(LENGTHS, 2, seed=3)) for _ in range(2)]
    assert first[0] == first[1], "same seed, same order"
    sampler = LengthBucketBatchSampler(LENGTHS, 2, seed=3)
    epochs = [epoch_batches(sampler) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2], "a new order every epoch"
    orders = {tuple(len({int(LENGTHS[i]) for i in b}) and int(LENGTHS[b[0]]) for b in e) for e in epochs}
    assert len(orders) > 1, "buckets are interleaved differently across epochs, not visited in length order"
    assert epoch_batches(LengthBucketBatchSampler(LENGTHS, 2, seed=4)) != epochs[0]


def test_generative_training_data_comes_in_length_buckets(tiny_data) -> None:
    train = tiny_data[2]
    assert isinstance(train, LengthBucketTrainDataLoader)
    rows = 0
    for batch in train:
        assert batch["item_length"].unique().numel() == 1
        rows += len(batch)
    assert rows == len(train._dataset)


def test_baselines_keep_recbole_batches(make_config) -> None:
    config = make_config("SASRec")
    init_seed(config["seed"], config["reproducibility"])
    train = load_data(config)[1]
    assert not isinstance(train, LengthBucketTrainDataLoader)


# ---- precision ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, expected", [({"avx2"}, False), ({"avx2", "avx512_bf16"}, True), ({"amx_bf16"}, True)])
def test_auto_precision_follows_native_bf16(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(recipe, "cpu_flags", lambda: frozenset(flags))
    use_bf16, why = resolve_precision("auto", "cpu")
    assert use_bf16 is expected and why.startswith("precision: " + ("bf16" if expected else "fp32"))


def test_precision_can_be_forced_and_is_checked(monkeypatch) -> None:
    monkeypatch.setattr(recipe, "cpu_flags", lambda: frozenset({"avx2"}))
    assert resolve_precision("bf16", "cpu")[0] is True
    assert resolve_precision("fp32", "cpu")[0] is False
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")


def test_logits_are_fp32_under_bf16_autocast(tiny_tiger, tiny_batch) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        enc, mask = tiny_tiger.encode(tiny_batch)
        hidden = tiny_tiger.decode_hidden(tiny_tiger.t5.decoder, tiny_tiger.item_labels(tiny_batch["item_id"]), enc, mask)
        logits = tiny_tiger.logits(hidden.bfloat16())
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, tiny_tiger.logits(hidden.bfloat16().float()))  # not rounded to bf16 after


# ---- schedule and weight decay ------------------------------------------------------------------------
def test_lr_factor_by_hand() -> None:
    kw = dict(warmup_steps=4, decay_steps=14, min_ratio=0.1)
    assert [lr_factor(s, schedule="cosine", **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(9, schedule="cosine", **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way: cos = 0
    assert lr_factor(9, schedule="linear", **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(6, schedule="linear", **kw) == pytest.approx(0.1 + 0.9 * 0.8)
    assert lr_factor(6, schedule="cosine", **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_factor(14, schedule="cosine", **kw) == lr_factor(100, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(50, schedule="constant", **kw) == 1.0


def test_stage_keys_override_the_shared_recipe(make_config) -> None:
    config = make_config("STREAMRec", lr_schedule="cosine", warmup_steps=7, rl_lr_schedule="constant",
                         rl_warmup_steps=0, sft_weight_decay=0.2)
    assert Recipe.from_config(config, "pt") == Recipe("cosine", 7, config["lr_decay_epochs"], config["min_lr_ratio"], 0.0)
    assert Recipe.from_config(config, "rl").schedule == "constant" and Recipe.from_config(config, "rl").warmup_steps == 0
    assert Recipe.from_config(config, "sft").weight_decay == 0.2
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        Recipe.from_config(make_config("TIGER", lr_schedule="step"))


def test_the_schedule_drives_tiger_training_and_is_checkpointed(make_config, tiny_data) -> None:
    from recbole_streamrec.trainer.checkpoint import load_checkpoint

    config = make_config("TIGER", epochs=2, learning_rate=0.01, lr_schedule="linear", warmup_steps=3,
                         lr_decay_epochs=3, min_lr_ratio=0.0, weight_decay=0.1, checkpoint_tag="sched")
    init_seed(config["seed"], config["reproducibility"])
    train, valid = tiny_data[2], tiny_data[3]
    model = get_model("TIGER")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "TIGER")(config, model)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / 3), "warm-up starts at lr / warmup_steps"
    trainer.fit(train, valid, saved=True)
    steps = 2 * len(train)
    expected = 0.01 * lr_factor(steps, schedule="linear", warmup_steps=3, decay_steps=3 * len(train), min_ratio=0.0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert load_checkpoint(trainer.last_checkpoint_file)["scheduler"]["last_epoch"] == steps
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("layer_norm" in names[id(p)] for p in groups[1]["params"]) and groups[1]["params"]


def test_decay_groups_split_norms_from_matrices(tiny_tiger) -> None:
    decay, keep = decay_groups(tiny_tiger, 0.05)
    assert decay["weight_decay"] == 0.05 and keep["weight_decay"] == 0.0
    n_params = sum(1 for p in tiny_tiger.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(keep["params"]) == n_params
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in keep["params"])


def test_decay_groups_give_named_parameters_their_own_rate(tiny_tiger) -> None:
    """``lr_of``: the parameters it names form extra groups with that ``lr`` (decay kept apart); the rest stay
    in the two plain groups, which carry no ``lr`` of their own."""
    groups = decay_groups(tiny_tiger, 0.05, lambda name: 7e-3 if ".SelfAttention." in name else None)
    names = {id(p): n for n, p in tiny_tiger.named_parameters()}
    assert [("lr" in g) for g in groups[:2]] == [False, False]
    fast = [g for g in groups if g.get("lr") == 7e-3]
    assert fast and all(".SelfAttention." in names[id(p)] for g in fast for p in g["params"])
    assert {g["weight_decay"] for g in fast} == {0.05}  # attention has matrices only (its bias table is 2-D)
    assert not any(".SelfAttention." in names[id(p)] for g in groups[:2] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in tiny_tiger.parameters() if p.requires_grad)


def test_evaluation_rows_sorted_by_length_give_the_same_metrics(make_config, tiny_data) -> None:
    config, valid = tiny_data[0], tiny_data[3]
    lengths = valid._dataset.inter_feat["item_length"]
    assert torch.equal(lengths, lengths.sort().values), "evaluation rows come sorted by history length"
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("TIGER")(config, tiny_data[2]._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "TIGER")(config, model)
    sorted_result = trainer.evaluate(valid, load_best_model=False)
    feat = valid._dataset.inter_feat
    valid._dataset.inter_feat = feat[torch.randperm(len(feat), generator=torch.Generator().manual_seed(0))]
    try:
        shuffled_result = trainer.evaluate(valid, load_best_model=False)
    finally:
        valid._dataset.inter_feat = feat
    assert sorted_result.keys() == shuffled_result.keys()
    for key in sorted_result:
        assert sorted_result[key] == pytest.approx(shuffled_result[key], abs=1e-4), key


# ---- progress lines inside long phases ------------------------------------------------------------------
def test_progress_logs_at_most_once_per_interval_and_not_at_the_end(caplog) -> None:
    from recbole_streamrec.trainer.progress import Progress

    now = [0.0]
    progress = Progress("[pretrain] epoch 0", total=10, interval=30, clock=lambda: now[0])
    lines = []
    for step in range(10):
        now[0] += 10.0  # a step every 10 s: a line every 3 steps, none for the last (the epoch line follows)
        lines.append(progress.tick(1, samples=512))
    logged = [line for line in lines if line]
    assert len(logged) == 3 and lines[2] and lines[5] and lines[8] and lines[9] is None
    assert logged[0] == "[pretrain] epoch 0: 3/10 batches (30%), 51 samples/s, about 70s left"
    silent = Progress("x", total=10, interval=0, clock=lambda: now[0])
    assert all(silent.tick() is None for _ in range(10)), "progress_interval 0 turns the lines off"


def test_training_epochs_log_progress_lines(make_config, tiny_data, caplog) -> None:
    config = make_config("TIGER", epochs=1, progress_interval=1e-9, checkpoint_tag="progress")
    init_seed(config["seed"], config["reproducibility"])
    train, valid = tiny_data[2], tiny_data[3]
    model = get_model("TIGER")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "TIGER")(config, model)
    with caplog.at_level("INFO"):
        trainer.fit(train, valid, saved=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 0: ")]
    assert len(lines) == len(train) - 1, "a line after every step but the last when the interval is tiny"
    assert lines[0].startswith(f"epoch 0: 1/{len(train)} steps") and "samples/s" in lines[0]


# ---- early stopping ----------------------------------------------------------------------------------------
def test_early_stopping_delta_by_hand() -> None:
    stop = recipe.early_stopping
    assert stop(0.5, 0.5, 3, 10) == (0.5, 0, False, True), "RecBole's rule: a tie is an improvement"
    assert stop(0.5, 0.5, 3, 10, delta=0.0) == (0.5, 4, False, False), "delta 0: a tie is not"
    assert stop(0.5, 0.5, 10, 10, delta=0.0) == (0.5, 11, True, False), "and counts toward the patience"
    assert stop(0.505, 0.5, 2, 10, delta=0.01) == (0.5, 3, False, False)
    assert stop(0.52, 0.5, 2, 10, delta=0.01) == (0.52, 0, False, True)
    assert stop(0.49, 0.5, 2, 10, bigger=False, delta=0.0) == (0.49, 0, False, True)
    assert stop(0.5, 0.5, 2, 10, bigger=False, delta=0.0) == (0.5, 3, False, False)


@pytest.mark.parametrize("delta, epochs_run", [(None, 6), (0.0, 3)])
def test_stopping_delta_stops_a_run_whose_scores_tie(make_config, tiny_data, delta, epochs_run) -> None:
    import recbole.trainer.trainer as recbole_trainer

    original = recbole_trainer.early_stopping
    # the learning rate reaches 0 at the end of epoch 0, so every later validation score ties epoch 0's
    config = make_config("TIGER", epochs=6, stopping_step=1, eval_step=1, lr_schedule="linear", warmup_steps=0,
                         lr_decay_epochs=1, min_lr_ratio=0.0, stopping_delta=delta, checkpoint_tag=f"tie-{delta}")
    init_seed(config["seed"], config["reproducibility"])
    train, valid = tiny_data[2], tiny_data[3]
    trainer = get_trainer(config["MODEL_TYPE"], "TIGER")(config, get_model("TIGER")(config, train._dataset))
    trainer.fit(train, valid, saved=True)
    assert len(trainer.train_loss_dict) == epochs_run
    assert recbole_trainer.early_stopping is original, "RecBole's rule is restored after fit"


# ---- time budget ---------------------------------------------------------------------------------------------
def test_lr_factor_follows_the_given_progress_after_the_warm_up() -> None:
    kw = dict(warmup_steps=2, decay_steps=10, min_ratio=0.1)
    assert lr_factor(0, schedule="cosine", progress=0.9, **kw) == 0.5, "the warm-up is counted in steps"
    assert lr_factor(500, schedule="cosine", progress=0.0, **kw) == pytest.approx(1.0), "not by the step count"
    assert lr_factor(3, schedule="linear", progress=0.5, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(3, schedule="cosine", progress=2.0, **kw) == pytest.approx(0.1), "flat at the floor after it"
    assert lr_factor(3, schedule="constant", progress=0.7, **kw) == 1.0


def test_recipe_reads_the_budget_and_refuses_a_budget_horizon_without_one(make_config) -> None:
    config = make_config("TIGER", time_budget=90, lr_decay_horizon="budget")
    recipe_ = Recipe.from_config(config)
    assert (recipe_.time_budget, recipe_.decay_horizon) == (90.0, "budget")
    from recbole_streamrec.errors import UserError

    with pytest.raises(UserError, match=r"lr_decay_horizon=budget \(config_dict\) needs time_budget"):
        make_config("TIGER", lr_decay_horizon="budget")
    with pytest.raises(UserError, match=r"time_budget=-1 \(config_dict\) must be a number > 0"):
        make_config("TIGER", time_budget=-1)


def fit_tiger(make_config, tiny_data, **keys):
    config = make_config("TIGER", **keys)
    init_seed(config["seed"], config["reproducibility"])
    train, valid = tiny_data[2], tiny_data[3]
    trainer = get_trainer(config["MODEL_TYPE"], "TIGER")(config, get_model("TIGER")(config, train._dataset))
    trainer.fit(train, valid, saved=False)
    return trainer


def test_time_budget_ends_the_epoch_and_stops_training_at_its_validation(make_config, tiny_data, caplog) -> None:
    keys = dict(epochs=4, eval_step=1, stopping_step=10, checkpoint_tag="budget")
    with caplog.at_level("INFO"):
        budgeted = fit_tiger(make_config, tiny_data, time_budget=1e-6, **keys)
    assert len(budgeted.train_loss_dict) == 1, "the budget is spent in epoch 0: stop at its validation"
    assert budgeted.scheduler.last_epoch == 1 < len(tiny_data[2]), "and epoch 0 ends after the step that spent it"
    assert budgeted.trained_seconds > 0
    assert any(r.getMessage().startswith("time budget spent") for r in caplog.records)
    assert len(fit_tiger(make_config, tiny_data, time_budget=1e6, **keys).train_loss_dict) == 4


def test_budget_horizon_decays_the_learning_rate_with_the_training_clock(make_config, tiny_data) -> None:
    keys = dict(epochs=1, lr_schedule="linear", warmup_steps=0, min_lr_ratio=0.0, checkpoint_tag="budget-lr")
    by_time = fit_tiger(make_config, tiny_data, time_budget=1e-6, lr_decay_horizon="budget", **keys)
    assert by_time.optimizer.param_groups[0]["lr"] == 0.0, "the budget is spent: the decay has ended"
    by_epochs = fit_tiger(make_config, tiny_data, time_budget=1e-6, lr_decay_epochs=100, **keys)
    assert by_epochs.optimizer.param_groups[0]["lr"] > 0.9 * by_epochs.config["learning_rate"]


def test_a_spent_budget_validates_its_epoch_whatever_eval_step_says(make_config, tiny_data) -> None:
    trainer = fit_tiger(make_config, tiny_data, epochs=5, eval_step=100, time_budget=1e-6, checkpoint_tag="budget-ev")
    assert len(trainer.train_loss_dict) == 1 and trainer.best_valid_result is not None


@pytest.mark.parametrize("schedule, says", [("constant", "no decay"), ("cosine", "decay over the time budget (60s")])
def test_the_logged_recipe_says_whether_the_rate_decays(schedule, says, caplog) -> None:
    """A constant rate logs "no decay", not the decay horizon it ignores (lr_factor is 1 after the warm-up)."""
    stage = type("Stage", (), {"recipe": Recipe(schedule=schedule, time_budget=60.0, decay_horizon="budget"),
                               "epochs": 5, "config": {"stopping_delta": None}})()
    with caplog.at_level("INFO"):
        recipe.RecipeMixin.log_recipe(stage, " (rl)")
    line, = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe (rl):")]
    assert line.startswith(f"recipe (rl): lr schedule {schedule}") and says in line, line
    assert ("decay over" in line) == (schedule != "constant")
