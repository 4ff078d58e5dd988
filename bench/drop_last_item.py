"""Evaluate a saved run with each user's most recent history item hidden: how much does the model use it?

    python bench/drop_last_item.py --model=TIGER --dataset=DS --checkpoint_tag=TAG [run options] --eval_only \
        [--rank_file=test.csv] [--valid_rank_file=valid.csv] [--result_file=r.json]

Takes the arguments of ``run_recbole_streamrec.py`` (``--eval_only`` is required: it only evaluates the run's best
checkpoint) and changes one thing: before the model scores a batch, the last item of every history of two or more
items is removed (its position becomes padding and the history length drops by one). Nothing else changes: the
split, the targets and the items masked from the ranking (the user's history, the removed item included) are
RecBole's.

On the test split this scores the test target from the validation history. Beside the run's own test score
(the same history plus the validation item) and its validation score (the same history, the validation target),
it separates the two things that differ between the splits: one more history item, and another target. A model
whose test score barely moves when the item is hidden makes little use of the most recent item.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import recbole_streamrec.quick_start as quick_start  # noqa: E402
import run_recbole_streamrec  # noqa: E402


def drop_last_item(interaction, seq_field: str, len_field: str):
    """``interaction`` with the last item of each left-aligned history of ≥ 2 items replaced by padding (0)."""
    seq, length = interaction[seq_field].clone(), interaction[len_field].clone()
    rows = torch.nonzero(length > 1).squeeze(1)
    seq[rows, length[rows] - 1] = 0
    length[rows] -= 1
    interaction[seq_field], interaction[len_field] = seq, length
    return interaction


def without_last_item(model_class: type) -> type:
    """A subclass of ``model_class`` whose full-ranking scores see each history without its last item."""

    class WithoutLastItem(model_class):
        def full_sort_predict(self, interaction):
            return super().full_sort_predict(drop_last_item(interaction, self.ITEM_SEQ, self.ITEM_SEQ_LEN))

    WithoutLastItem.__name__ = WithoutLastItem.__qualname__ = model_class.__name__
    return WithoutLastItem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--eval_only" not in argv:
        print("error: bench/drop_last_item.py evaluates a saved run: add --eval_only", file=sys.stderr)
        return 2
    get_model = quick_start.get_model
    quick_start.get_model = lambda name: without_last_item(get_model(name))
    try:
        return run_recbole_streamrec.main(argv)
    finally:
        quick_start.get_model = get_model


if __name__ == "__main__":
    sys.exit(main())
