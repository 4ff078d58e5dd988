"""What SFT has learnt at each position: −log π(label) per position of ``[trace, item codes, EOS]``.

    python bench/position_nll.py --stage1 saved/TIGER-amazon2018-scientific-paper-recency-lr3e-4-h60-wd0.15.pth \\
        --checkpoints saved/STREAMRec-amazon2018-scientific-paper-attn-1e-3-sft.pth \\
        --dataset amazon2018-scientific --data_path=../shared/data --recency_embedding=True --trace_separator=True

The hand-over model (``--stage1``: a TIGER checkpoint, which becomes stage 1 as ``init_checkpoint`` makes it, or a
STREAM-Rec ``-pi_ref.pth``; its reasoning decoder takes the direct decoder's weights) annotates the first
``--batches`` training batches once. Every model (the hand-over model, then each of ``--checkpoints``) is scored by
teacher forcing on those same traces and targets, and the mean negative log-likelihood of each label position is
printed: the l reasoning tokens, the item's m codes, EOS (the separator is no label). When the annotation spells
the target (``spells_target`` ≈ 1), the trace positions are stage 1's own task and the item positions a copy of
the trace: an item-code NLL near 0 says the copy is learnt, one near stage 1's says the item ignores the trace.
``--users N`` (default 256) also counts, for the first N validation users, how many distinct items each model's
top-10 holds under its own decoding (``reasoning_decoding``): joint decoding keeps ``beam_size`` (trace, item)
pairs, so when the item ignores the trace the pairs repeat a few items and the top-10 has holes.
Further ``--key=value`` arguments are config overrides (they must give the checkpoints' model).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.nn.functional as F


@torch.no_grad()
def position_nll(model, batches) -> torch.Tensor:
    """``[l + m + 1]``: mean −log π(label) at each label position over the rows of ``batches`` (each with its
    trace in ``model.REASONING_FIELD``), the separator left out."""
    total, n = None, 0
    for inter in batches:
        think, items = inter[model.REASONING_FIELD], inter[model.POS_ITEM_ID]
        enc, mask = model.encode(inter)
        labels = torch.cat([model.separated(think), model.item_labels(items)], dim=1)
        logits = model.logits(model.policy_hidden(labels, think.shape[1], enc, mask)).float()
        nll = -F.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # [B, T]
        if labels.shape[1] > think.shape[1] + model.n_codes + 1:  # drop the separator's column
            nll = torch.cat([nll[:, : think.shape[1]], nll[:, think.shape[1] + 1:]], dim=1)
        total, n = (nll.sum(0) if total is None else total + nll.sum(0)), n + nll.shape[0]
    return total / n


@torch.no_grad()
def items_in_top(model, inter, k: int = 10) -> float:
    """Mean number of real (distinct, non-padding) items in the top-``k`` of each row of ``inter``."""
    items, _ = model.generate_items(inter, max(k, model.beam_size))
    return (items[:, :k] > 0).sum(dim=1).float().mean().item()


def hand_over(config, model, path: str):
    """``model`` as SFT starts from the checkpoint at ``path``, in eval mode: its weights loaded as
    ``init_checkpoint`` loads them (a TIGER through ``state_from_tiger``), then the reasoning decoder takes the
    direct decoder's (``sft_init_decoder: direct``)."""
    from recbole_streamrec.trainer import STREAMRecTrainer

    STREAMRecTrainer(config, model).load_initial_weights(path)
    model.init_reasoning_from_direct()
    model.set_stage("sft")
    return model.eval()


def main(argv: Optional[list[str]] = None) -> str:
    from recbole.utils import init_seed

    from recbole_streamrec.config import config_from_args
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.trainer.checkpoint import load_checkpoint, restore_model
    from recbole_streamrec.utils import get_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True, help="the stage-1 checkpoint (TIGER, or a STREAM-Rec -pi_ref.pth)")
    parser.add_argument("--checkpoints", default="", help="STREAM-Rec checkpoints to score, comma separated")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="YAML files, comma or space separated")
    parser.add_argument("--batches", type=int, default=8, help="training batches to annotate and score")
    parser.add_argument("--users", type=int, default=256, help="validation users whose top-10 is counted (0: none)")
    args, rest = parser.parse_known_args(argv)
    files = args.config_files.replace(",", " ").split() if args.config_files else None
    config = config_from_args("STREAMRec", args.dataset, files, rest)
    init_seed(config["seed"], config["reproducibility"])
    _, train, valid, _ = load_data(config)
    model_class = get_model("STREAMRec")
    paths = [p for p in args.checkpoints.split(",") if p]
    checkpoints = [load_checkpoint(p, "cpu") for p in paths]  # every file read before the long part
    for path, checkpoint in zip(paths, checkpoints):
        if checkpoint.get("model", "STREAMRec") != "STREAMRec":
            sys.exit(f"position_nll: {path} is a {checkpoint['model']} checkpoint, not STREAMRec")
    stage1 = hand_over(config, model_class(config, train._dataset).to(config["device"]), args.stage1)
    batches = []
    for _, inter in zip(range(args.batches), train):
        inter = inter.to(config["device"])
        inter[stage1.REASONING_FIELD] = stage1.annotate(inter)
        batches.append(inter)
    users = next(iter(valid))[0][: args.users].to(config["device"]) if args.users else None
    models = [("hand-over (" + args.stage1 + ")", stage1)]
    for path, checkpoint in zip(paths, checkpoints):
        model = model_class(config, train._dataset)
        restore_model(model, checkpoint, path)  # a checkpoint of another shape is a one-line error naming it
        model.set_stage("sft")
        models.append((path, model.to(config["device"]).eval()))
    rows = [(name, position_nll(model, batches), items_in_top(model, users) if users is not None else None)
            for name, model in models]
    l, m = stage1.n_reasoning, stage1.n_codes
    columns = [f"trace {i + 1}" for i in range(l)] + [f"code {j + 1}" for j in range(m)] + ["EOS"]
    columns += [f"items in top-10 ({args.users} valid users)"] if users is not None else []
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in nll.tolist())
              + ("" if top is None else f" | {top:.2f}") + " |" for name, nll, top in rows]
    text = (f"−log π(label) per position, first {args.batches} training batches, traces annotated by the "
            "hand-over model\n\n" + "\n".join(lines) + "\n")
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
