"""Why this recommendation: a user's history, the reasoning tokens and what each points to, the top-k.

    python -m recbole_streamrec.explain --checkpoint saved/STREAMRec-ml-100k-sft.pth --users 1,5 --dataset ml-100k

Takes the run script's ``--dataset``, ``--config_files`` and ``--key=value`` arguments (the checkpoint must
match that config: same semantic IDs, same T5). ``--users`` are RecBole user tokens; each is explained on
its test row (leave-one-out: history = everything before the held-out item). A reasoning token is a code
``c`` at level ``d``; it "points to" the items whose level-``d`` code is ``c``.
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from recbole_streamrec.tokenizer.codes import FIRST_CODE


def item_names(dataset, ids: list[int], texts: Optional[list[str]] = None) -> list[str]:
    """RecBole item tokens, with the item's text (``texts``, from the ``.item`` file) or its loaded ``title`` field."""
    field = dataset.iid_field
    tokens = dataset.id2token(field, ids)
    if texts is not None:
        return [f"{t} ({texts[i].split('; ')[0].removeprefix('title: ')[:40]})" if texts[i] else str(t)
                for t, i in zip(tokens, ids)]
    if "title" not in dataset.field2type or dataset.item_feat is None:
        return [str(t) for t in tokens]
    titles = dataset.item_feat["title"][ids]  # [n, words] token_seq ids, 0 = padding
    words = [" ".join(str(w) for w in dataset.id2token("title", row[row > 0].tolist())) for row in titles]
    return [f"{t} ({w[:40]})" if w else str(t) for t, w in zip(tokens, words)]


def token_items(model, token: int) -> tuple[str, list[int]]:
    """``L<d>:c<c>`` and the ids of the items whose level-d code is c (``T<j>:c<c>``: level j of the
    collaborative trace's second ID)."""
    level, code = divmod(token - FIRST_CODE, model.codebook_size)
    if level >= model.n_codes:  # a collaborative trace token: level j of the items' second ID
        j = level - model.n_codes
        items = (model.trace_tokens[1:, j] == token).nonzero().squeeze(1) + 1
        return f"T{j}:c{code}", items.tolist()
    items = (model.item_codes[1:, level] == code).nonzero().squeeze(1) + 1  # [n] item ids
    return f"L{level}:c{code}", items.tolist()


def explain_rows(model, dataset, rows, *, topk: int = 10, per_token: int = 3, history: int = 10,
                 texts: Optional[list[str]] = None) -> str:
    """The explanation of every row of ``rows`` (an ``Interaction``) as text."""
    if hasattr(model, "recommend"):
        think, items, scores = model.recommend(rows, k=topk)
    else:
        items, scores = model.generate_items(rows)
        think, items, scores = items[:, :0], items[:, :topk], scores[:, :topk]
    out = []
    users = dataset.id2token(dataset.uid_field, rows[dataset.uid_field].tolist())
    for b, user in enumerate(users):
        seq = rows[model.ITEM_SEQ][b, : int(rows[model.ITEM_SEQ_LEN][b])].tolist()
        target = int(rows[model.POS_ITEM_ID][b])
        out.append(f"user {user}: history ({len(seq)} items, last {min(history, len(seq))} shown, oldest first)")
        out += [f"    {name}" for name in item_names(dataset, seq[-history:], texts)]
        out.append(f"  held-out item: {item_names(dataset, [target], texts)[0]}")
        out.append(f"  reasoning ({think.shape[1]} tokens):")
        for i, token in enumerate(think[b].tolist()):
            label, pointed = token_items(model, token)
            hit = " (incl. the held-out item)" if target in pointed else ""
            names = ", ".join(item_names(dataset, pointed[:per_token], texts)) or "no item"
            more = " …" if len(pointed) > per_token else ""
            out.append(f"    {i + 1}. {label} → {len(pointed)} items{hit}: {names}{more}")
        out.append(f"  top-{topk} (log-probability):")
        names = item_names(dataset, items[b].tolist(), texts)
        for rank, (name, item, score) in enumerate(zip(names, items[b].tolist(), scores[b].tolist())):
            mark = "  <- held-out item" if item == target else ""
            out.append(f"    {rank + 1:2d}. {score:8.3f}  {name}{mark}")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> str:
    from recbole.utils import init_seed

    from recbole_streamrec.config import config_from_args
    from recbole_streamrec.quick_start import load_data
    from recbole_streamrec.trainer.checkpoint import load_checkpoint, restore_model
    from recbole_streamrec.utils import get_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by a run (e.g. …-sft.pth)")
    parser.add_argument("--users", required=True, help="RecBole user tokens, comma separated")
    parser.add_argument("--model", "-m", default=None, help="default: the checkpoint's model")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="YAML files, comma or space separated")
    parser.add_argument("--topk", type=int, default=10)
    args, rest = parser.parse_known_args(argv)  # rest: the run script's --key=value config overrides
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    model_name = args.model or checkpoint.get("model", "STREAMRec")
    files = args.config_files.replace(",", " ").split() if args.config_files else None
    config = config_from_args(model_name, args.dataset, files, rest)
    init_seed(config["seed"], config["reproducibility"])
    dataset, train, _, test = load_data(config)
    model = get_model(model_name)(config, train._dataset)
    restore_model(model, checkpoint, args.checkpoint)
    if hasattr(model, "set_stage"):
        model.set_stage(checkpoint.get("stage") or "sft")
    model = model.to(config["device"]).eval()
    feat = test._dataset.inter_feat
    wanted = torch.as_tensor(dataset.token2id(dataset.uid_field, args.users.split(",")))
    rows = feat[torch.isin(feat[dataset.uid_field], wanted.reshape(-1)).nonzero().squeeze(1)]
    from recbole_streamrec.data.item_vectors import has_item_text, item_texts

    texts = item_texts(config, dataset) if has_item_text(config) else None
    text = explain_rows(model, dataset, rows.to(config["device"]), topk=args.topk, texts=texts)
    print(text)
    return text


if __name__ == "__main__":
    main()
