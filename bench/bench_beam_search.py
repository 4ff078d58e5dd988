"""Constrained beam search: ``model.generate_items`` (cached, trie tables) vs ``transformers`` ``generate``.

Both decode the same TIGER (paper size by default, random init or ``--checkpoint``) on the same random
histories and must return the same top-10 items; the script prints users/second for both and the speed-up,
and writes ``<out>.json`` and ``<out>.md``.

    python bench/bench_beam_search.py                  # 256 users, 4,000 synthetic items, beam 20, random init
    python bench/bench_beam_search.py --users 64 --threads 1
    python bench/bench_beam_search.py --codes saved/cache/<dataset>/semantic_ids-<hash>.npz   # real codes
    python bench/bench_beam_search.py --checkpoint saved/TIGER-<dataset>.pth   # trained weights and their codes

The reference is what TIGER implementations usually do: ``generate(num_beams=20, num_return_sequences=10,
max_new_tokens=4, length_penalty=0, prefix_allowed_tokens_fn=<dict trie>)``. Its scores are the same
sequence log-probabilities as ours (log-softmax over the whole vocabulary, invalid tokens at −inf), so the
two searches keep the same beams at every step; they can differ only where two candidates tie to ~1e-6.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import torch
import yaml
from torch import Tensor

import recbole_streamrec.model.generative as generative
from _common import StubCatalogue, StubConfig, synthetic_codes
from recbole_streamrec.model.tiger import TIGER
from recbole_streamrec.tokenizer.codes import PAD, tokens_to_codes

ROOT = Path(__file__).resolve().parent.parent
ITEM_ID, ITEM_SEQ, ITEM_SEQ_LEN = "item_id", "item_id_list", "item_length"


def model_config(args: argparse.Namespace) -> StubConfig:
    """``properties/generative.yaml`` + ``properties/model/TIGER.yaml``, then the command line."""
    config = StubConfig()
    for name in ("generative.yaml", "model/TIGER.yaml"):
        config.update(yaml.safe_load((ROOT / "properties" / name).read_text()) or {})
    config.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": ITEM_ID, "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": ITEM_SEQ_LEN, "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": args.history,
        "device": torch.device("cpu"), "d_model": args.d_model, "d_ff": args.d_ff, "d_kv": args.d_kv,
        "num_heads": args.heads, "num_layers": args.layers, "num_decoder_layers": args.layers,
        "beam_size": args.beam, "inference_amp": args.inference_amp,
    })
    return config


def build_model(args: argparse.Namespace) -> TIGER:
    """A TIGER over ``--codes`` (or synthetic codes), without a RecBole dataset; ``--checkpoint`` weights."""
    checkpoint = None
    if args.checkpoint:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        codes = checkpoint["state_dict"]["item_codes"].numpy()
    elif args.codes:
        codes = np.load(args.codes, allow_pickle=False)["codes"]
    else:
        codes = synthetic_codes(args.items, 4, args.codebook_size, args.seed)
    config = model_config(args)
    config["codebook_size"] = args.codebook_size
    torch.manual_seed(args.seed)
    # the constructor asks the tokenizer stage for the semantic IDs; hand it ours instead
    with mock.patch.object(generative, "semantic_ids", lambda config, dataset: codes):
        model = TIGER(config, StubCatalogue(codes.shape[0]))
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def random_histories(model: TIGER, users: int, history: int, seed: int) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed + 1)
    items = torch.randint(1, model.n_items, (users, history), generator=generator)
    return {ITEM_SEQ: items, ITEM_SEQ_LEN: torch.full((users,), history, dtype=torch.long)}


def trie_prefix_fn(item_tokens: Tensor) -> Callable[[int, Tensor], list[int]]:
    """``prefix_allowed_tokens_fn``: allowed next tokens for each generated prefix (a dict trie)."""
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in item_tokens[1:].tolist():
        for depth in range(len(row)):
            allowed.setdefault(tuple(row[:depth]), set()).add(row[depth])
    table = {prefix: sorted(tokens) for prefix, tokens in allowed.items()}
    return lambda batch_id, sent: table.get(tuple(sent[1:].tolist()), [PAD])


def ours(model: TIGER, batch: dict[str, Tensor], beam: int, top: int) -> tuple[Tensor, Tensor]:
    items, scores = model.generate_items(batch, beam_size=beam)
    return items[:, :top], scores[:, :top]


def reference(model: TIGER, batch: dict[str, Tensor], beam: int, top: int) -> tuple[Tensor, Tensor]:
    ids, mask = model.history_tokens(batch[ITEM_SEQ], batch[ITEM_SEQ_LEN])
    out = model.t5.generate(
        input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=top,
        max_new_tokens=model.n_codes, prefix_allowed_tokens_fn=trie_prefix_fn(model.item_tokens),
        length_penalty=0.0, do_sample=False, early_stopping=False, output_scores=True,
        return_dict_in_generate=True,
    )
    codes = tokens_to_codes(out.sequences[:, 1 : 1 + model.n_codes], codebook_size=model.codebook_size)
    return model.trie.lookup(codes).view(-1, top), out.sequences_scores.view(-1, top)


def timed(fn: Callable[[dict[str, Tensor]], Any], batches: list[dict[str, Tensor]]) -> tuple[float, list[Any]]:
    """Wall time of ``fn`` over all batches, and its results."""
    start = time.perf_counter()
    results = [fn(batch) for batch in batches]
    return time.perf_counter() - start, results


@torch.no_grad()
def measure(model: TIGER, batches: list[dict[str, Tensor]], beam: int, top: int, repeats: int) -> dict[str, Any]:
    """Best time of each method over ``repeats`` rounds, interleaved so load changes hit both alike."""
    methods = {
        "ours": lambda batch: ours(model, batch, beam, top),
        "generate": lambda batch: reference(model, batch, beam, top),
        "encoder": lambda batch: model.encode(batch),  # the one pass both methods share
    }
    best = {name: float("inf") for name in methods}
    results: dict[str, list[Any]] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            seconds, results[name] = timed(fn, batches)
            best[name] = min(best[name], seconds)
    merged = {name: tuple(torch.cat([r[i] for r in results[name]]) for i in (0, 1)) for name in ("ours", "generate")}
    return {"seconds": best, **merged}  # items [U, top] and scores [U, top] per method


def compare(items_a: Tensor, scores_a: Tensor, items_b: Tensor, scores_b: Tensor) -> dict[str, Any]:
    same = (items_a == items_b).all(1)
    same_set = torch.tensor([set(a) == set(b) for a, b in zip(items_a.tolist(), items_b.tolist())])
    result: dict[str, Any] = {
        "identical_top_fraction": float(same.float().mean()),
        "identical_top_set_fraction": float(same_set.float().mean()),
        "max_abs_score_diff": float((scores_a - scores_b).abs().max()),
        "first_mismatch": None,
    }
    if not same.all():
        user = int((~same).nonzero()[0])
        result["first_mismatch"] = {
            "user": user, "ours": items_a[user].tolist(), "generate": items_b[user].tolist(),
            "ours_scores": [round(s, 6) for s in scores_a[user].tolist()],
            "generate_scores": [round(s, 6) for s in scores_b[user].tolist()],
        }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=256, help="users (histories) decoded")
    parser.add_argument("--batch", type=int, default=256, help="users per call (RecBole's eval_batch_size)")
    parser.add_argument("--items", type=int, default=4000, help="synthetic catalogue size (without --codes)")
    parser.add_argument("--codebook-size", type=int, default=256, help="K")
    parser.add_argument("--codes", default=None, help="a cached semantic_ids-*.npz instead of synthetic codes")
    parser.add_argument("--checkpoint", default=None, help="a TIGER checkpoint (its semantic IDs win)")
    parser.add_argument("--history", type=int, default=20, help="items per history")
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--top", type=int, default=10, help="items compared per user")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--d-kv", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4, help="encoder layers = decoder layers")
    parser.add_argument("--inference-amp", action="store_true", help="bf16 autocast in ours (may reorder ties)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the best time of each is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "bench_beam_search"),
                        help="output path without suffix (.json and .md are written)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args)
    histories = random_histories(model, args.users, args.history, args.seed)
    batches = [{k: v[i : i + args.batch] for k, v in histories.items()} for i in range(0, args.users, args.batch)]
    measure(model, [{k: v[:4] for k, v in histories.items()}], args.beam, args.top, 1)  # warm-up (lazy init)
    measured = measure(model, batches, args.beam, args.top, args.repeats)
    t_ours, t_ref, t_enc = (measured["seconds"][name] for name in ("ours", "generate", "encoder"))
    result = {
        "date": datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "setup": {k: v for k, v in vars(args).items() if k != "out"},
        "n_items": model.n_items - 1, "n_params": sum(p.numel() for p in model.parameters()),
        "ours_seconds": t_ours, "generate_seconds": t_ref, "encoder_seconds": t_enc,
        "ours_users_per_second": args.users / t_ours, "generate_users_per_second": args.users / t_ref,
        "speed_up": t_ref / t_ours,
        "decoding_speed_up": (t_ref - t_enc) / max(t_ours - t_enc, 1e-9),  # without the shared encoder pass
        **compare(*measured["ours"], *measured["generate"]),
    }
    report(result, Path(args.out))
    return result


def report(result: dict[str, Any], out: Path) -> None:
    setup = result["setup"]
    lines = [
        f"# Constrained beam search: ours vs transformers generate ({result['date']})",
        "",
        f"{setup['users']} users, {result['n_items']} items, beam {setup['beam']}, top {setup['top']}, "
        f"history {setup['history']}, T5 d_model {setup['d_model']} × {setup['layers']}+{setup['layers']} layers "
        f"({result['n_params'] / 1e6:.1f} M parameters), {result['torch_threads']} torch threads.",
        "",
        "| | seconds | users / s |",
        "|---|---:|---:|",
        f"| `model.generate_items` | {result['ours_seconds']:.2f} | {result['ours_users_per_second']:.1f} |",
        f"| `t5.generate` + prefix_allowed_tokens_fn | {result['generate_seconds']:.2f} | "
        f"{result['generate_users_per_second']:.1f} |",
        "",
        f"Speed-up: **{result['speed_up']:.2f}×** ({result['decoding_speed_up']:.1f}× on the decoding alone: both "
        f"share one encoder pass of {result['encoder_seconds']:.2f} s). Identical top-{setup['top']} lists: "
        f"{result['identical_top_fraction']:.1%} of users (same sets: {result['identical_top_set_fraction']:.1%}); "
        f"max |score difference| {result['max_abs_score_diff']:.2e}.",
    ]
    if result["first_mismatch"]:
        lines += ["", f"First mismatch: `{json.dumps(result['first_mismatch'])}`"]
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
