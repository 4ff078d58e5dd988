"""The price of thinking: STREAM-Rec's inference cost against TIGER's, for l = 0 … 8 reasoning tokens.

    python bench/cost_of_thinking.py                          # paper-size T5, 256 users, beam 20
    python bench/cost_of_thinking.py --small --users 32       # quick check (the quick preset's T5)

Both models decode the *same* users in the *same* batches through their own ``generate_items`` (encode once,
STREAM-Rec's ``l`` greedy reasoning tokens, then constrained beam search over the item trie, KV cache
throughout). STREAM-Rec's ``l`` is its ``inference_reasoning_steps``. Each setting is timed ``--repeats``
times, interleaved with the others so that machine load drifts hit all of them alike, and the median is
reported as users/second and as cost relative to TIGER (its seconds / TIGER's seconds).
Target: STREAM-Rec with l = 6 costs ≤ 1.5× TIGER.

The models are random-initialised (cost does not depend on the weights) over *synthetic* semantic IDs:
``--items`` random unique 4-code tuples (K = 256 per level, like the RQ-VAE's output), so no dataset, item
vectors or tokenizer training is needed; the constructors' semantic-ID and neighbour-table look-ups are
answered with these codes and a random table (the neighbour table is used in training only). Histories are
random items, lengths uniform in 1…20, padded to 20 like RecBole's (so the encoder cost equals an evaluation
batch's). Writes ``<out>/cost_of_thinking.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import numpy as np
import torch
import yaml
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ROOT, StubCatalogue, StubConfig, machine_info, machine_line, markdown_table, pyplot, synthetic_codes,
)

import recbole_streamrec.model.generative as generative  # noqa: E402
import recbole_streamrec.model.streamrec as streamrec  # noqa: E402
from recbole_streamrec.model.streamrec import STREAMRec  # noqa: E402
from recbole_streamrec.model.tiger import TIGER  # noqa: E402

ITEM_SEQ, ITEM_SEQ_LEN = "item_id_list", "item_length"
TARGET_STEPS, TARGET_RATIO = 6, 1.5


def model_config(args: argparse.Namespace, model: str) -> StubConfig:
    """``properties/generative.yaml`` + ``properties/model/<model>.yaml`` (+ ``quick.yaml`` with ``--small``)."""
    config = StubConfig()
    files = ["generative.yaml", f"model/{model}.yaml", *(["quick.yaml"] if args.small else [])]
    for name in files:
        config.update(yaml.safe_load((ROOT / "properties" / name).read_text()) or {})
    config.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": ITEM_SEQ_LEN, "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": args.history,
        "device": torch.device(args.device), "beam_size": args.beam, "inference_amp": args.inference_amp,
        "reasoning_decoding": args.reasoning_decoding,
    })
    return config


def build(model_class: type, config: StubConfig, codes: np.ndarray, seed: int) -> Any:
    """``model_class`` over ``codes``, random weights, eval mode, on ``config['device']``."""
    n, rng = codes.shape[0], np.random.default_rng(seed)
    torch.manual_seed(seed)
    with mock.patch.object(generative, "semantic_ids", lambda config, dataset: codes), \
            mock.patch.object(streamrec, "item_neighbours", lambda config, dataset, k: rng.integers(1, n, (n, k))):
        model = model_class(config, StubCatalogue(n))
    return model.to(config["device"]).eval()


def histories(n_items: int, users: int, length: int, seed: int, device: str) -> dict[str, Tensor]:
    """Random histories ``[users, length]``: lengths uniform in 1…length, padded with item 0 like RecBole's."""
    g = torch.Generator().manual_seed(seed + 1)
    lengths = torch.randint(1, length + 1, (users,), generator=g)
    items = torch.randint(1, n_items, (users, length), generator=g)
    items[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return {ITEM_SEQ: items.to(device), ITEM_SEQ_LEN: lengths.to(device)}


def timed_pass(model: Any, batches: list[dict[str, Tensor]], beam: int) -> float:
    """Seconds to decode every batch with ``model.generate_items``."""
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for batch in batches:
        model.generate_items(batch, beam_size=beam)
    sync()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Median seconds per setting: TIGER, then STREAM-Rec for each l."""
    codes = synthetic_codes(args.items, 4, model_config(args, "TIGER")["codebook_size"], args.seed)
    tiger = build(TIGER, model_config(args, "TIGER"), codes, args.seed)
    stream = build(STREAMRec, model_config(args, "STREAMRec"), codes, args.seed)
    stream.set_stage("rl")  # any post-pretraining stage: the prefix is the l reasoning tokens
    users = histories(tiger.n_items, args.users, args.history, args.seed, args.device)
    batches = [{k: v[i : i + args.batch] for k, v in users.items()} for i in range(0, args.users, args.batch)]
    settings: list[tuple[str, Optional[int], Any]] = [("TIGER", None, tiger)]
    settings += [(f"STREAM-Rec l={l}", l, stream) for l in range(args.max_steps + 1)]

    def run(setting: tuple[str, Optional[int], Any], data: list[dict[str, Tensor]]) -> float:
        name, steps, model = setting
        if steps is not None:
            model.inference_steps = steps
        return timed_pass(model, data, args.beam)

    warm = [{k: v[: min(8, args.batch)] for k, v in users.items()}]
    for setting in settings:  # first-call costs (allocation, lazy init) are not what is measured
        run(setting, warm)
    stream.inference_steps = 0  # same T5 weights (same seed), no prefix: must decode exactly like TIGER
    same = bool((stream.generate_items(warm[0])[0] == tiger.generate_items(warm[0])[0]).all())
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in settings}
    for _ in range(args.repeats):
        for setting in settings:
            seconds[setting[0]].append(run(setting, batches))
    tiger_s = statistics.median(seconds["TIGER"])
    rows = []
    for name, steps, _ in settings:
        med = statistics.median(seconds[name])
        rows.append({"setting": name, "l": steps, "median_s": med, "min_s": min(seconds[name]),
                     "max_s": max(seconds[name]), "users_per_s": args.users / med, "cost_vs_tiger": med / tiger_s})
    setup = {"l0_equals_tiger": same, "n_params_tiger": sum(p.numel() for p in tiger.parameters()), "t5": {
        k: tiger.t5.config.to_dict()[k] for k in ("d_model", "d_ff", "d_kv", "num_heads", "num_layers",
                                                  "num_decoder_layers")}}
    return rows, setup


def report(args: argparse.Namespace, rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    at_target = next(r for r in rows if r["l"] == TARGET_STEPS) if args.max_steps >= TARGET_STEPS else None
    verdict = "not measured (max_steps < 6)"
    if at_target:
        met = at_target["cost_vs_tiger"] <= TARGET_RATIO
        verdict = f"**{'met' if met else 'NOT met'}**: {at_target['cost_vs_tiger']:.2f}× TIGER"
    t5 = setup["t5"]
    size = "reduced (`--small`: the quick preset's T5), not the paper-size model" if args.small else "paper-size T5"
    lines = [
        "# Cost of thinking: STREAM-Rec vs TIGER inference", "",
        f"- model: {size}: d_model {t5['d_model']}, d_ff {t5['d_ff']}, {t5['num_layers']}+{t5['num_decoder_layers']} "
        f"layers, {t5['num_heads']} heads × d_kv {t5['d_kv']} ({setup['n_params_tiger'] / 1e6:.1f} M parameters in "
        "TIGER), random weights",
        f"- work: {args.users} users in batches of {args.batch}, beam {args.beam}, {args.items} synthetic items "
        f"(4 codes each), histories ≤ {args.history} items; reasoning tokens decoded `{args.reasoning_decoding}`; "
        f"bf16 autocast {'on' if args.inference_amp else 'off'}",
        f"- timing: median of {args.repeats} interleaved repeats on {args.device} (torch threads: "
        f"{torch.get_num_threads()}) after one warm-up call per setting",
        f"- machine: {machine_line(machine_info())}",
        f"- command: `python bench/cost_of_thinking.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
        f"- target: STREAM-Rec with l = {TARGET_STEPS} costs ≤ {TARGET_RATIO}× TIGER — {verdict}", "",
        markdown_table(["setting", "seconds (median)", "min … max", "users / s", "cost vs TIGER"],
                       [[r["setting"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f} … {r['max_s']:.3f}",
                         f"{r['users_per_s']:.1f}", f"{r['cost_vs_tiger']:.2f}×"] for r in rows], "lrrrr"),
        "",
        "Cost vs TIGER = median seconds of the setting / median seconds of TIGER (= TIGER's users/s over the "
        "setting's). STREAM-Rec l=0 decodes exactly like TIGER (same weights here; identical top items: "
        f"{'yes' if setup['l0_equals_tiger'] else 'NO'}), so its ratio shows the measurement noise.",
    ]
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    plt = pyplot()
    tiger = rows[0]
    stream = [r for r in rows if r["l"] is not None]
    ls = [r["l"] for r in stream]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(ls, [r["users_per_s"] for r in stream], "o-", label="STREAM-Rec")
    left.axhline(tiger["users_per_s"], color="grey", linestyle="--", label="TIGER")
    left.set(xlabel="reasoning tokens l", ylabel="users / second", title="throughput")
    right.plot(ls, [r["cost_vs_tiger"] for r in stream], "o-", label="STREAM-Rec / TIGER")
    right.axhline(1.0, color="grey", linestyle="--", label="TIGER")
    right.axhline(TARGET_RATIO, color="red", linestyle=":", label=f"target at l={TARGET_STEPS}: ≤ {TARGET_RATIO}×")
    right.axvline(TARGET_STEPS, color="red", linestyle=":", alpha=0.4)
    right.set(xlabel="reasoning tokens l", ylabel="cost relative to TIGER", title="cost of thinking")
    for ax in (left, right):
        ax.set_xticks(ls)
        ax.legend(fontsize=8)
    fig.suptitle(("reduced (--small) — " if args.small else "") + f"{args.users} users, beam {args.beam}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256, help="users decoded per timed pass")
    parser.add_argument("--batch", type=int, default=256, help="users per generate_items call (eval_batch_size)")
    parser.add_argument("--beam", type=int, default=20, help="constrained beam width")
    parser.add_argument("--max_steps", type=int, default=8, help="STREAM-Rec is timed for l = 0 … max_steps")
    parser.add_argument("--items", type=int, default=25000, help="synthetic catalogue size (paper: ~25k)")
    parser.add_argument("--history", type=int, default=20, help="MAX_ITEM_LIST_LENGTH")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (median reported)")
    parser.add_argument("--small", action="store_true", help="the quick preset's small T5 (properties/quick.yaml)")
    parser.add_argument("--reasoning_decoding", default="greedy", choices=["greedy", "beam", "sample"])
    parser.add_argument("--inference_amp", action="store_true", help="bf16 autocast in decoding")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default docs/results; bench/out with --small, so a quick check "
                             "never overwrites the paper-size result)")
    args = parser.parse_args(argv)
    args.out = args.out or ROOT / ("bench/out" if args.small else "docs/results")
    return args


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, setup = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(args, rows, setup)
    (args.out / "cost_of_thinking.md").write_text(text)
    with (args.out / "cost_of_thinking.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(args.out / "cost_of_thinking.png", rows, args)
    print(text)
    print(f"wrote {args.out / 'cost_of_thinking'}.{{md,csv,png}}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
