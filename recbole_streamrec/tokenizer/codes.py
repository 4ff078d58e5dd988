"""Semantic-ID tokens and the prefix trie of valid items (SPEC §2, §4).

Token ids: ``PAD = 0``, ``EOS = 1``, code ``c`` at level ``d`` ↦ ``2 + K·d + c`` (K = codebook size).
The code vocabulary ℂ is the ``m·K`` tokens from ``FIRST_CODE`` on.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

PAD = 0
EOS = 1
FIRST_CODE = 2


def codes_to_tokens(codes: Tensor, *, codebook_size: int) -> Tensor:
    """``[N, m]`` codes in ``[0, K)`` → ``[N, m]`` token ids."""
    levels = torch.arange(codes.shape[-1], device=codes.device)
    return FIRST_CODE + codebook_size * levels + codes


def tokens_to_codes(tokens: Tensor, *, codebook_size: int) -> Tensor:
    """Inverse of :func:`codes_to_tokens` (level taken from the column)."""
    levels = torch.arange(tokens.shape[-1], device=tokens.device)
    return tokens - FIRST_CODE - codebook_size * levels


def vocab_size(n_levels: int, codebook_size: int) -> int:
    return FIRST_CODE + n_levels * codebook_size


class PrefixTrie(nn.Module):
    """Dense per-level transition tables over the item code tuples.

    ``child[d][p, c]`` is the id of the prefix reached from prefix ``p`` (of length ``d``) by code ``c``,
    or -1 when no item continues that way. Prefix ids at level 0 are ``{0}`` (the root); at the last level
    the "prefix id" is the RecBole item id itself, so a finished beam *is* an item. Tables are buffers, so
    they follow the model to its device and are rebuilt (not saved) from the semantic IDs.
    """

    def __init__(self, item_codes: np.ndarray, *, codebook_size: int) -> None:
        """``item_codes``: ``[n_items, m]`` codes; row 0 (padding) is ignored."""
        super().__init__()
        codes = np.asarray(item_codes, dtype=np.int64)[1:]  # [I, m], item id = row + 1
        n_items, self.n_levels = codes.shape
        self.codebook_size = codebook_size
        parent = np.zeros(n_items, dtype=np.int64)  # prefix id of each item at the current level
        n_parent = 1
        for d in range(self.n_levels):
            table = np.full((n_parent, codebook_size), -1, dtype=np.int64)
            if d == self.n_levels - 1:
                child = np.arange(1, n_items + 1)
            else:
                keys = parent * codebook_size + codes[:, d]
                _, child = np.unique(keys, return_inverse=True)
            table[parent, codes[:, d]] = child
            self.register_buffer(f"child_{d}", torch.from_numpy(table), persistent=False)
            parent, n_parent = child, int(child.max()) + 1

    def child(self, level: int) -> Tensor:
        return getattr(self, f"child_{level}")

    def step(self, level: int, prefix: Tensor) -> Tensor:
        """``prefix`` ``[...]`` ids (−1 = dead beam) → ``[..., K]`` child ids (−1 = not allowed)."""
        table = self.child(level)
        rows = table[prefix.clamp(min=0)]
        return torch.where(prefix.unsqueeze(-1) >= 0, rows, torch.full_like(rows, -1))

    def lookup(self, codes: Tensor) -> Tensor:
        """``[N, m]`` codes → ``[N]`` item ids, 0 where the tuple is no item (for the format reward)."""
        prefix = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for d in range(self.n_levels):
            ok = (codes[:, d] >= 0) & (codes[:, d] < self.codebook_size)
            nxt = self.step(d, prefix).gather(1, codes[:, d].clamp(0, self.codebook_size - 1).unsqueeze(1))
            prefix = torch.where(ok, nxt.squeeze(1), torch.full_like(prefix, -1))
        return prefix.clamp(min=0)
