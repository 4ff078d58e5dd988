"""Where an annotation's ‖t − s_i‖ comes from: the codes said so far, and MLP_s's part of the state.

    python bench/state_decomposition.py --checkpoint saved/STREAMRec-amazon2018-scientific-ft-sft.pth \\
        --dataset amazon2018-scientific --data_path ../shared/data --config_files properties/cpu.yaml

With ``state_head: codes`` the state is ``s_i = Σ_{j≤i} E_{o_j} + MLP_s(Σ_{j≤i} d_j)``. This runs the annotation
(``STREAMRec.annotation_steps``) on the first ``--batches`` training batches of a trained checkpoint and prints, per
step i = 0…l, the means of ‖t − s_i‖, ‖t − Σ E_o‖ (the codes' part), ‖MLP_s(Σ d)‖, ‖Σ d‖ and the cosine between
MLP_s's output and what the codes leave, t − Σ E_o. Further ``--key=value`` arguments are config overrides.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.nn.functional as F

COLUMNS = ("‖t − s_i‖", "‖t − Σ E_o‖", "‖MLP_s(Σ d)‖", "‖Σ d‖", "cos(MLP_s, t − Σ E_o)")


@torch.no_grad()
def decompose(model, batches) -> torch.Tensor:
    """``[l + 1, 5]``: the :data:`COLUMNS` per step, averaged over the rows of ``batches``."""
    total, n = None, 0
    for inter in batches:
        steps = []
        for t, d_sum, code_sum, s, _ in model.annotation_steps(inter):
            part, left = model.mlp_s(d_sum), t - code_sum
            steps.append(torch.stack([(t - s).norm(dim=-1), left.norm(dim=-1), part.norm(dim=-1), d_sum.norm(dim=-1),
                                      F.cosine_similarity(part, left, dim=-1)], dim=1).sum(0))
        rows = torch.stack(steps)
        total, n = (rows if total is None else total + rows), n + t.shape[0]
    return total / n


def main(argv: Optional[list[str]] = None) -> str:
    from recbole.utils import init_seed

    from recbole_streamrec.config import config_from_args
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.trainer.checkpoint import load_checkpoint
    from recbole_streamrec.utils import get_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a STREAM-Rec checkpoint (e.g. …-sft.pth)")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="YAML files, comma or space separated")
    parser.add_argument("--batches", type=int, default=8, help="training batches to annotate")
    args, rest = parser.parse_known_args(argv)
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    if checkpoint.get("model", "STREAMRec") != "STREAMRec":
        sys.exit(f"state_decomposition: {args.checkpoint} is a {checkpoint['model']} checkpoint, not STREAMRec")
    files = args.config_files.replace(",", " ").split() if args.config_files else None
    config = config_from_args("STREAMRec", args.dataset, files, rest)
    init_seed(config["seed"], config["reproducibility"])
    _, train, _, _ = load_data(config)
    model = get_model("STREAMRec")(config, train._dataset)
    model.load_state_dict(checkpoint["state_dict"])
    model = model.to(config["device"]).eval()
    batches = (inter.to(config["device"]) for _, inter in zip(range(args.batches), train))
    table = decompose(model, batches)
    lines = ["| i | " + " | ".join(COLUMNS) + " |", "|---:|" + "---:|" * len(COLUMNS)]
    lines += [f"| {i} | " + " | ".join(f"{v:.3f}" for v in row.tolist()) + " |" for i, row in enumerate(table)]
    text = f"{args.checkpoint}, first {args.batches} training batches\n\n" + "\n".join(lines) + "\n"
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
