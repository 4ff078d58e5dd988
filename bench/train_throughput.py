"""Training throughput: the old path (every history padded to 20 items, the preset's precision, RecBole's random
batches) against the new one (batches from length buckets, the encoder cut to the batch's longest history, the
precision ``auto`` picks for this machine), for TIGER and every STREAM-Rec stage, interleaved in one run.

    python bench/train_throughput.py --out docs/results/train_throughput     # quick, paper-size and cpu T5
    python bench/train_throughput.py --quick --out bench/out/throughput       # < 3 minutes

Histories have the lengths of amazon2018-scientific's training samples (read from ``--data_path`` when the
dataset is there; otherwise a fixed table of that distribution below) over a synthetic catalogue of the same
size with random unique semantic IDs, so no dataset or tokenizer has to be built. A "sample" is one training
row (one history and its target); GRPO's samples are users, each with ``rl_group_size`` rollouts.

Also measured: this machine's fp32 (and bf16) matmul GFLOP/s, and for one representative batch per model the
FLOPs of a training step (``torch.utils.flop_counter``) over its time, as a fraction of the fp32 matmul rate.
Writes ``<out>/throughput.json`` and ``<out>/throughput.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch
import yaml
from recbole.data.interaction import Interaction
from torch.utils.flop_counter import FlopCounterMode

import recbole_streamrec.model.generative as generative
import recbole_streamrec.model.streamrec as streamrec
from _common import StubCatalogue, StubConfig, machine_info, machine_line, markdown_table, synthetic_codes
from recbole_streamrec.data.batching import LengthBucketBatchSampler
from recbole_streamrec.model.tiger import TIGER
from recbole_streamrec.tokenizer.codes import FIRST_CODE
from recbole_streamrec.trainer.recipe import resolve_precision

ROOT = Path(__file__).resolve().parent.parent
SCIENTIFIC = "amazon2018-scientific"
N_ITEMS = 4344  # amazon2018-scientific's catalogue
# Share of amazon2018-scientific's 33,541 training rows by history length 1..20 (used when the data is absent;
# computed from ../shared/data by scientific_lengths' own rule).
FALLBACK_LENGTH_SHARE = [0.248, 0.248, 0.1507, 0.095, 0.0631, 0.044, 0.0328, 0.024, 0.0181, 0.0142,
                         0.0109, 0.0089, 0.0072, 0.0056, 0.0044, 0.0037, 0.003, 0.0024, 0.0019, 0.0141]
STAGES = ("tiger", "pretrain", "annotate", "sft", "rl")


# ---- data ---------------------------------------------------------------------------------------------
def scientific_lengths(data_path: Path, n: int, seed: int) -> tuple[np.ndarray, str]:
    """``n`` history lengths drawn from amazon2018-scientific's training rows (leave-one-out, ≤ 20 items)."""
    rng = np.random.default_rng(seed)
    inter = data_path / SCIENTIFIC / f"{SCIENTIFIC}.inter"
    if inter.is_file():
        users = [line.split("\t", 1)[0] for line in inter.read_text().splitlines()[1:] if line]
        counts = np.unique(users, return_counts=True)[1]
        # a user with c items gives training rows with histories 1 .. c - 3 (valid and test hold the last two)
        pool = np.concatenate([np.minimum(np.arange(1, c - 2), 20) for c in counts if c > 3])
        return rng.choice(pool, size=n), f"{inter} ({len(pool)} training rows)"
    share = np.array(FALLBACK_LENGTH_SHARE) / sum(FALLBACK_LENGTH_SHARE)
    return rng.choice(np.arange(1, 21), size=n, p=share), "built-in table of amazon2018-scientific's lengths"


def make_rows(lengths: np.ndarray, model, seed: int) -> Interaction:
    """Training rows: left-aligned histories padded to 20, targets and random reasoning tokens."""
    g = torch.Generator().manual_seed(seed)
    n = len(lengths)
    items = torch.randint(1, N_ITEMS + 1, (n, 20), generator=g)
    lengths_t = torch.from_numpy(lengths).long()
    items[torch.arange(20).unsqueeze(0) >= lengths_t.unsqueeze(1)] = 0
    codes = torch.randint(0, model.codebook_size, (n, model.n_reasoning if hasattr(model, "n_reasoning") else 1),
                          generator=g)
    return Interaction({
        "item_id_list": items, "item_length": lengths_t, "item_id": torch.randint(1, N_ITEMS + 1, (n,), generator=g),
        "reasoning_tokens": codes + FIRST_CODE,
    })


def batch_orders(lengths: np.ndarray, batch: int, seed: int) -> dict[str, list[torch.Tensor]]:
    """Row indices per batch: RecBole's (a random permutation) and the length buckets'."""
    g = torch.Generator().manual_seed(seed)
    old = list(torch.randperm(len(lengths), generator=g).split(batch))
    new = [torch.tensor(b) for b in LengthBucketBatchSampler(torch.from_numpy(lengths), batch, seed=seed)]
    return {"old": old, "new": new}


# ---- models -------------------------------------------------------------------------------------------
def model_config(size: str) -> StubConfig:
    config = StubConfig()
    files = ["generative.yaml", "model/TIGER.yaml", "model/STREAMRec.yaml", f"dataset/{SCIENTIFIC}.yaml",
             *([f"{size}.yaml"] if size in ("quick", "cpu") else [])]
    for name in files:
        config.update(yaml.safe_load((ROOT / "properties" / name).read_text()) or {})
    config.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": 20,
        "device": torch.device("cpu"), "topk": [10], "dropout_rate": config["dropout_rate"],
    })
    return config


def build(kind: str, size: str, seed: int):
    config = model_config(size)
    codes = synthetic_codes(N_ITEMS, config["rqvae_levels"] + 1, config["codebook_size"], seed)
    rng = np.random.default_rng(seed)
    neighbours = np.stack([rng.permutation(np.arange(1, N_ITEMS + 1))[:60] for _ in range(N_ITEMS + 1)])
    torch.manual_seed(seed)
    with mock.patch.object(generative, "semantic_ids", lambda c, d: codes), \
            mock.patch.object(streamrec, "item_neighbours", lambda c, d, n: neighbours[:, :n]):
        cls = TIGER if kind == "tiger" else streamrec.STREAMRec
        return cls(config, StubCatalogue(N_ITEMS + 1)), config


def step_fn(stage: str, model, config) -> Callable[[Interaction], None]:
    """One training step (or one annotation call) of ``stage`` on a batch."""
    if stage == "annotate":
        return lambda batch: model.eval().annotate(batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if stage == "rl":
        from recbole_streamrec.trainer import grpo

        cfg = grpo.GRPOConfig.from_config(config)
        anchor = copy.deepcopy(model).eval().requires_grad_(False)

        def rl_step(batch):  # what STREAMRecTrainer's GRPO epoch does per rollout batch
            batch = batch[: cfg.batch_size]
            rollouts = grpo.make_rollouts(model, anchor, batch, cfg)
            for _ in range(cfg.iterations):
                optimizer.zero_grad()
                loss, _ = grpo.grpo_loss_on_rollouts(model, batch, rollouts, cfg)
                loss.backward()
                optimizer.step()

        return rl_step

    def train_step(batch):
        model.train()
        optimizer.zero_grad()
        losses = model.calculate_loss(batch)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return train_step


def prepared(stage: str, size: str, path: str, amp: bool, seed: int):
    model, config = build("tiger" if stage == "tiger" else "streamrec", size, seed)
    if stage != "tiger":
        model.set_stage({"pretrain": "pretrain", "annotate": "sft", "sft": "sft", "rl": "rl"}[stage])
        if stage in ("sft", "rl"):
            model.set_reference(copy.deepcopy(model))
    model.full_padding = path == "old"
    fn = step_fn(stage, model, config)

    flush = path == "new"  # the new path flushes denormals (quick_start does, for the generative models)

    def run(batch):
        torch.set_flush_denormal(flush)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            fn(batch)

    return run, model, config


# ---- measurement --------------------------------------------------------------------------------------
def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        spent += time.perf_counter() - t
        if spent > 3.0:  # emulated bf16 takes seconds per product; the best of a few is enough
            break
    return 2 * n**3 / best / 1e9


def step_efficiency(stage: str, size: str, amp: bool, rows: Interaction, length: int, batch: int, seed: int,
                    peak: float) -> dict[str, float]:
    """FLOPs and time of one step on a batch whose histories all have ``length`` items."""
    run, _, _ = prepared(stage, size, "new", amp, seed)
    sample = rows[torch.arange(batch)]
    sample["item_length"] = torch.full((batch,), length)
    sample["item_id_list"][:, length:] = 0
    sample["item_id_list"][:, :length] = torch.randint(1, N_ITEMS + 1, (batch, length))
    run(sample)  # warm-up
    with FlopCounterMode(display=False) as counter:
        run(sample)
    flops = counter.get_total_flops()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        run(sample)
        best = min(best, time.perf_counter() - t)
    gflops = flops / best / 1e9
    return {"history_items": length, "batch": batch, "step_gflop": flops / 1e9, "step_seconds": best,
            "achieved_gflops": gflops, "fraction_of_fp32_matmul": gflops / peak}


def measure_stage(stage: str, size: str, args, lengths: np.ndarray, preset_amp: bool, auto_amp: bool) -> dict:
    started = time.perf_counter()
    batch = 64 if stage == "rl" else args.batch
    orders = batch_orders(lengths, batch, args.seed)
    paths = {"old": prepared(stage, size, "old", preset_amp, args.seed),
             "new": prepared(stage, size, "new", auto_amp, args.seed)}
    rows = make_rows(lengths, paths["old"][1], args.seed)
    seconds = {p: 0.0 for p in paths}
    samples = {p: 0 for p in paths}
    cursor = {p: 0 for p in paths}
    steps = args.steps if stage != "rl" else max(1, args.steps // 2)
    timed = {p: [orders[p][i % len(orders[p])] for i in range(steps * args.rounds)] for p in paths}
    for p, (run, _, _) in paths.items():  # warm-up, untimed: one batch of every shape the path will be timed on
        seen = set()
        for idx in timed[p]:
            longest = 20 if p == "old" else int(lengths[idx.numpy()].max())  # the old path pads every batch to 20
            shape = (len(idx), longest)
            if shape not in seen:
                seen.add(shape)
                run(rows[idx])
    for r in range(args.rounds):
        for p, (run, _, _) in paths.items():  # interleaved: load changes hit both paths alike
            for s in range(steps):
                if s and args.max_seconds and seconds[p] >= args.max_seconds * (r + 1) / args.rounds:
                    break  # this path's share of the time cap is spent (at least one step per round is timed)
                idx = timed[p][cursor[p]]
                cursor[p] += 1
                t = time.perf_counter()
                run(rows[idx])
                seconds[p] += time.perf_counter() - t
                samples[p] += len(idx)
    old, new = samples["old"] / seconds["old"], samples["new"] / seconds["new"]
    print(f"  {size:5s} {stage:9s} old {old:8.1f}/s  new {new:8.1f}/s  x{new / old:.2f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"baseline_samples_per_s": old, "new_samples_per_s": new, "speedup": new / old,
            "batch": batch, "timed_samples": samples}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = ["quick"] if args.quick else args.sizes.split(",")
    stages = args.stages.split(",")
    lengths, source = scientific_lengths(Path(args.data_path), args.pool, args.seed)
    auto_amp, why = resolve_precision("auto", "cpu")
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"{why}\nmatmul GFLOP/s: fp32 {peak['fp32']:.1f}, bf16 {peak['bf16']:.1f}; lengths: {source} "
          f"(mean {lengths.mean():.2f} items)", flush=True)
    result: dict[str, Any] = {
        "machine": machine_info(), "date": datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "precision_auto": why, "matmul_gflops": peak, "history_lengths": source,
        "mean_history_items": float(lengths.mean()), "padding_share_old": float(1 - (lengths * 4 + 1).mean() / 81),
    }
    for size in sizes:
        preset_amp = size == "quick"  # the quick preset used bf16 autocast; generative.yaml used fp32 (cpu.yaml is new)
        out: dict[str, Any] = {"old_precision": "bf16" if preset_amp else "fp32",
                               "new_precision": "bf16" if auto_amp else "fp32"}
        for stage in stages:
            out[stage] = measure_stage(stage, size, args, lengths, preset_amp, auto_amp)
        rows = make_rows(lengths[: args.batch], build("tiger", size, args.seed)[0], args.seed)
        mean_len = int(round(float(lengths.mean())))
        out["efficiency"] = {
            prec: step_efficiency("tiger", size, prec == "bf16", rows, mean_len, args.batch, args.seed, peak["fp32"])
            for prec in ("fp32", "bf16")
        }
        result[size] = out
    result["tiger"] = {k: result[sizes[0]]["tiger"][k] for k in ("baseline_samples_per_s", "new_samples_per_s")} \
        if "tiger" in stages else {}
    for stage in stages:  # the top-level keys: the first size measured (quick T5 unless --sizes says otherwise)
        result.setdefault(stage, {k: result[sizes[0]][stage][k] for k in ("baseline_samples_per_s", "new_samples_per_s")})
    write(result, Path(args.out), sizes, stages)
    return result


def write(result: dict[str, Any], out: Path, sizes: list[str], stages: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Training throughput, old path vs new\n", f"Command: `{result['command']}`  ",
             f"Machine: {machine_line(result['machine'])}, {result['machine']['torch_threads']} torch threads  ",
             f"Date: {result['date']}  ", f"{result['precision_auto']}  ",
             f"Histories: {result['history_lengths']}, mean {result['mean_history_items']:.2f} items; the old path's "
             f"encoder input is {100 * result['padding_share_old']:.0f}% padding.  ",
             f"Matmul (1024³): fp32 {result['matmul_gflops']['fp32']:.1f} GFLOP/s, bf16 {result['matmul_gflops']['bf16']:.1f} GFLOP/s.\n",
             "Old: every history padded to 20 items, RecBole's random batches, the preset's precision. New: length "
             "buckets, encoder cut to the batch's longest history, `precision: auto`. Samples per second (a sample "
             "is a training row; for GRPO a user with its rollouts).\n"]
    for size in sizes:
        r = result[size]
        lines.append(f"## {size} T5 (old precision {r['old_precision']}, new {r['new_precision']})\n")
        table = [(s, f"{r[s]['baseline_samples_per_s']:.1f}", f"{r[s]['new_samples_per_s']:.1f}",
                  f"{r[s]['speedup']:.2f}×", r[s]["batch"]) for s in stages]
        lines.append(markdown_table(["stage", "old samples/s", "new samples/s", "speed-up", "batch"], table, "lrrrr"))
        eff = [(p, e["history_items"], f"{e['step_gflop']:.2f}", f"{e['step_seconds']:.3f}", f"{e['achieved_gflops']:.1f}",
                f"{100 * e['fraction_of_fp32_matmul']:.0f}%") for p, e in r["efficiency"].items()]
        lines.append("\nOne TIGER training step (forward + backward + AdamW) at the mean history length:\n")
        lines.append(markdown_table(["precision", "history items", "GFLOP", "seconds", "GFLOP/s", "of fp32 matmul"],
                                    eff, "lrrrrr") + "\n")
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'throughput.json'} and {out / 'throughput.md'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quick T5 only, fewer steps (under 3 minutes)")
    parser.add_argument("--out", default="bench/out/throughput", help="folder for throughput.json / .md")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"),
                        help=f"where {SCIENTIFIC}/ lies (its history lengths are used when present)")
    parser.add_argument("--sizes", default="quick,paper,cpu",
                        help="T5 sizes: quick (properties/quick.yaml), paper (generative.yaml), cpu (properties/cpu.yaml)")
    parser.add_argument("--stages", default=",".join(STAGES), help="tiger, pretrain, annotate, sft, rl")
    parser.add_argument("--batch", type=int, default=256, help="training batch (GRPO: 64 users)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path per round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--max_seconds", type=float, default=None,
                        help="timed seconds per path and stage at most (default: none; --quick: 6); emulated bf16 "
                             "makes the old path's steps take seconds on CPUs without native bf16")
    parser.add_argument("--pool", type=int, default=20000, help="training rows drawn from the length distribution")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.quick else 8)
    args.rounds = args.rounds or (2 if args.quick else 3)
    if args.max_seconds is None and args.quick:
        args.max_seconds = 6.0
    return args


if __name__ == "__main__":
    main()
