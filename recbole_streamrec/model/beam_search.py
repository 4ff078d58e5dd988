"""Constrained beam search over the item trie (SPEC §4), on the cached decoder of ``t5_decoding``.

Every step keeps the ``beam_size`` best *valid* prefixes per user: log-probabilities come from a softmax
over the whole vocabulary (so scores are true sequence log-probabilities, as in ``generate``), and codes
that no item continues with are masked to −inf before the top-k. After ``m`` steps each live beam is a
prefix id at the last trie level, which is the RecBole item id itself.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from recbole_streamrec.model.t5_decoding import DecoderState
from recbole_streamrec.tokenizer.codes import FIRST_CODE, PrefixTrie

# (tokens [N, 1], state) -> log-probabilities [N, V] of the next token
StepFn = Callable[[Tensor, DecoderState], Tensor]


def _level_slice(logprobs: Tensor, level: int, codebook_size: int) -> Tensor:
    start = FIRST_CODE + level * codebook_size
    return logprobs[..., start : start + codebook_size]


def best_per_prefix(scores: Tensor, prefix: Tensor) -> Tensor:
    """``scores`` ``[B, C]`` with every candidate but the best of each trie prefix ``prefix`` ``[B, C]`` at −inf.

    Two candidates of one user that reach the same item prefix through different starting sequences (traces)
    would take two beam slots for one item; this keeps the better one (``distinct`` search).
    """
    order = scores.argsort(dim=-1, descending=True, stable=True)  # best first
    by_prefix = prefix.gather(1, order).argsort(dim=-1, stable=True)  # grouped by prefix, best first in a group
    grouped = prefix.gather(1, order).gather(1, by_prefix)
    repeat = torch.zeros_like(grouped, dtype=torch.bool)
    repeat[:, 1:] = (grouped[:, 1:] == grouped[:, :-1]) & (grouped[:, 1:] >= 0)
    in_order = torch.zeros_like(repeat).scatter_(1, by_prefix, repeat)  # back to the best-first order
    return scores.masked_fill(torch.zeros_like(repeat).scatter_(1, order, in_order), float("-inf"))


def _first_level(first_logprobs: Tensor, trie: PrefixTrie, width: int, beam: int,
                 distinct: bool = False) -> tuple[Tensor, ...]:
    """Level 0 of the search: the ``beam`` best first codes of each user's ``W·K`` continuations.

    Returns scores, trie prefixes (−1 for a dead beam), the starting sequence each beam follows (``0..W−1``) and
    its code, all ``[B, beam]``.
    """
    k = trie.codebook_size
    batch = first_logprobs.shape[0] // width
    root = torch.zeros(batch * width, dtype=torch.long, device=first_logprobs.device)  # every sequence at the root
    children = trie.step(0, root).view(batch, width * k)  # [B, W·K]
    logp = _level_slice(first_logprobs.float(), 0, k).reshape(batch, width * k).masked_fill(children < 0, float("-inf"))
    if distinct and width > 1:
        logp = best_per_prefix(logp, children)
    if beam > width * k:
        # Level 0 has only W·K candidates: the beams beyond them start dead (-inf, no prefix) and the
        # later levels (beam·K candidates) fill them. Capping the beam at W·K instead would return fewer
        # than ``beam_size`` items whenever beam_size > W·codebook_size.
        pad = beam - width * k
        logp = torch.cat([logp, logp.new_full((batch, pad), float("-inf"))], dim=1)  # [B, beam]
        children = torch.cat([children, children.new_full((batch, pad), -1)], dim=1)
    scores, flat = logp.topk(beam, dim=-1)  # [B, beam]
    prefix = children.gather(1, flat).masked_fill(scores == float("-inf"), -1)
    origin = (flat // k).clamp(max=width - 1)  # which starting sequence; a padded (dead) beam takes the last
    return scores, prefix, origin, flat % k  # a padded beam still has a valid code to feed


@torch.no_grad()
def constrained_beam_search(
    step: StepFn,
    first_logprobs: Tensor,
    state: DecoderState,
    trie: PrefixTrie,
    *,
    beam_size: int,
    beams_per_user: int = 1,
    return_origins: bool = False,
    distinct: bool = False,
) -> tuple[Tensor, ...]:
    """Search the ``beam_size`` most likely items for each of ``B`` users.

    Args:
        step: runs the decoder one token further for all sequences in ``state``.
        first_logprobs: ``[B·W, V]`` log-probabilities for the first item code (after any prefix), plus
            each prefix's own log-probability when ``W = beams_per_user`` > 1.
        state: decoder cache holding ``W`` sequences per user (adjacent), positioned before the first item code.
        trie: valid code tuples.
        beams_per_user: ``W`` starting sequences per user (e.g. reasoning traces); level 0 chooses among
            all ``W·K`` continuations, so one user's beams may follow different prefixes.
        return_origins: also return which of the ``W`` starting sequences each item follows.
        distinct: keep at most one beam per item prefix at every level (the best, whichever starting sequence
            it follows), so the beams are ``beam_size`` different items; otherwise one item may fill several
            beams through different starting sequences (with ``W`` = 1 both are the same search).

    Returns:
        items ``[B, beam]`` (RecBole item ids, 0 for a dead beam) and scores ``[B, beam]`` (sequence
        log-probabilities, −inf for a dead beam), best first; with ``return_origins`` also the starting
        sequence of each, ``[B, beam]`` in ``0..W−1``.
    """
    width, k, beam = beams_per_user, trie.codebook_size, beam_size
    batch = first_logprobs.shape[0] // width
    scores, prefix, sources, codes = _first_level(first_logprobs, trie, width, beam, distinct)
    if width == 1:
        state.expand(beam)
    else:
        start = (torch.arange(batch, device=codes.device) * width).unsqueeze(1)  # [B, 1]
        state.select((sources + start).reshape(-1))
    offsets = (torch.arange(batch, device=codes.device) * beam).unsqueeze(1)  # [B, 1]
    for level in range(1, trie.n_levels):
        tokens = (FIRST_CODE + (level - 1) * k + codes).reshape(-1, 1)  # [B·beam, 1]
        logp = _level_slice(step(tokens, state).float(), level, k)  # [B·beam, K]
        children = trie.step(level, prefix.reshape(-1))  # [B·beam, K]
        total = (scores.reshape(-1, 1) + logp).masked_fill(children < 0, float("-inf")).view(batch, beam * k)
        if distinct and width > 1:
            total = best_per_prefix(total, children.view(batch, beam * k))
        scores, flat = total.topk(beam, dim=-1)  # [B, beam]
        origin, codes = flat // k, flat % k
        sources = sources.gather(1, origin)
        prefix = children.view(batch, beam, k)[
            torch.arange(batch, device=flat.device).unsqueeze(1), origin, codes
        ].masked_fill(scores == float("-inf"), -1)
        if level < trie.n_levels - 1:
            state.select((origin + offsets).reshape(-1))
    items = prefix.clamp(min=0)
    return (items, scores, sources) if return_origins else (items, scores)
