"""KV-cached incremental decoding over a ``transformers`` T5 decoder, for beams and groups.

Beam search and GRPO rollouts decode many sequences per user (``group`` of them: beams, rollouts or
candidate items) against the *same* encoder output. Expanding the encoder-side keys/values to every
sequence (what ``generate`` does) costs ``group×`` memory and bandwidth at every step. Here the
cross-attention keys/values are computed once per user (``[B, h, S, d_kv]``) and the queries of a user's
sequences are folded into one attention call. The same holds for the self-attention cache of the tokens a
user decoded before its sequences branched (STREAM-Rec's reasoning prefix): it is kept once per user, and
only each sequence's own tokens are cached per sequence.

The maths is exactly T5's (same modules, same weights, relative position bias, no 1/√d scaling); the test
suite checks it against the uncached ``transformers`` forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers.models.t5.modeling_t5 import T5Stack


def view_bias(gate: Tensor, gate_from: int, past: int, q: int) -> Tensor:
    """``[1, h, q, past + q]``: ``gate`` ``[h]`` where a query at position ``past..past+q−1`` that is at or after
    ``gate_from`` reads a key before ``gate_from``, 0 elsewhere (the trace gate of :meth:`DecoderState.close_view`
    and of STREAM-Rec's teacher-forced mask)."""
    rows = torch.arange(past, past + q, device=gate.device) >= gate_from  # [q]
    cols = torch.arange(past + q, device=gate.device) < gate_from  # [past + q]
    return (rows[:, None] & cols[None, :]).to(gate.dtype) * gate.view(1, -1, 1, 1)


@dataclass
class DecoderState:
    """Cache for ``N = B · group`` sequences decoding against ``B`` encoder outputs."""

    self_k: list[Tensor]  # per layer [N, h, t_seq, d_kv]: each sequence's own tokens
    self_v: list[Tensor]
    cross_k: list[Tensor]  # per layer [B, h, d_kv, S] (stored transposed for the score matmul)
    cross_v: list[Tensor]  # per layer [B, h, S, d_kv]
    cross_mask: Tensor  # [B, 1, 1, S] additive (0 or -inf-ish)
    group: int
    length: int = 0  # tokens decoded so far: t_prefix + t_seq
    # tokens decoded before the sequences of a user branched (e.g. STREAM-Rec's reasoning prefix before the
    # item beams): kept once per user, like the encoder side, so beams never copy them
    prefix_k: list[Tensor] = field(default_factory=list)  # per layer [B, h, d_kv, t_prefix]
    prefix_v: list[Tensor] = field(default_factory=list)  # per layer [B, h, t_prefix, d_kv]
    # a per-head bias [h] that queries at position >= gate_from add to keys before gate_from (STREAM-Rec's
    # trace gate: the item's view of the start token and the trace); None: no gate
    gate: Tensor | None = None
    gate_from: int = 0

    def close_view(self, gate: Tensor, position: int) -> None:
        """From position ``position`` on, queries see the keys before it through the extra bias ``gate`` ``[h]``."""
        self.gate, self.gate_from = gate, position

    @property
    def prefix_length(self) -> int:
        return self.prefix_v[0].shape[2] if self.prefix_v else 0

    def select(self, index: Tensor) -> None:
        """Keep sequences ``index`` ``[N']``; each must stay with its own user (beam reordering)."""
        self.self_k = [k.index_select(0, index) for k in self.self_k]
        self.self_v = [v.index_select(0, index) for v in self.self_v]
        self.group = index.numel() // self.cross_mask.shape[0]

    def expand(self, factor: int) -> None:
        """Repeat every sequence ``factor`` times (``[N] → [N·factor]``, copies adjacent).

        With one sequence per user, what it has decoded becomes the user's shared prefix instead of being
        copied ``factor`` times.
        """
        if self.group == 1 and self.self_k and self.self_k[0].shape[2] > 0:
            keys = [k.transpose(-1, -2) for k in self.self_k]
            self.prefix_k = [torch.cat([p, k], -1) for p, k in zip(self.prefix_k, keys)] if self.prefix_k else [
                k.contiguous() for k in keys]
            self.prefix_v = [torch.cat([p, v], 2) for p, v in zip(self.prefix_v, self.self_v)] if self.prefix_v \
                else self.self_v
            n = self.cross_mask.shape[0] * factor
            self.self_k = [k.new_empty(n, *k.shape[1:2], 0, k.shape[3]) for k in self.self_k]
            self.self_v = [v.new_empty(n, *v.shape[1:2], 0, v.shape[3]) for v in self.self_v]
        else:
            self.self_k = [k.repeat_interleave(factor, 0) for k in self.self_k]
            self.self_v = [v.repeat_interleave(factor, 0) for v in self.self_v]
        self.group *= factor


class CachedT5Decoder:
    """Step-wise T5 decoding with a :class:`DecoderState`; holds no weights of its own."""

    def __init__(self, decoder: T5Stack) -> None:
        self.decoder = decoder
        cfg = decoder.config
        self.n_heads, self.d_kv = cfg.num_heads, cfg.d_kv

    def _heads(self, x: Tensor) -> Tensor:  # [N, q, h·d_kv] → [N, h, q, d_kv]
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_kv).transpose(1, 2)

    @staticmethod
    def _fold(x: Tensor, b: int, g: int) -> Tensor:  # [B·g, h, q, c] → [B, h, g·q, c]
        _, h, q, c = x.shape
        return x.reshape(b, g, h, q, c).transpose(1, 2).reshape(b, h, g * q, c)

    @staticmethod
    def _unfold(x: Tensor, b: int, g: int, q: int) -> Tensor:  # [B, h, g·q, c] → [B·g, h, q, c]
        h, c = x.shape[1], x.shape[-1]
        return x.reshape(b, h, g, q, c).transpose(1, 2).reshape(b * g, h, q, c)

    def start(self, encoder_hidden: Tensor, encoder_mask: Tensor) -> DecoderState:
        """Encoder output ``[B, S, d]`` and mask ``[B, S]`` → an empty cache with one sequence per user."""
        cross_k, cross_v = [], []
        for block in self.decoder.block:
            attn = block.layer[1].EncDecAttention
            # transposed once here rather than (as a copy) at every step's q @ kᵀ
            cross_k.append(self._heads(attn.k(encoder_hidden)).transpose(-1, -2).contiguous())
            cross_v.append(self._heads(attn.v(encoder_hidden)))
        neg = torch.finfo(encoder_hidden.dtype).min
        mask = torch.zeros(encoder_mask.shape, dtype=encoder_hidden.dtype, device=encoder_hidden.device)
        mask = mask.masked_fill(encoder_mask == 0, neg)[:, None, None, :]  # [B, 1, 1, S]
        return DecoderState([], [], cross_k, cross_v, mask, group=1)

    def step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed ``tokens`` ``[N, q]`` (``N = B·group``) → final hidden states ``[N, q, d]``; cache grows by q."""
        n, q = tokens.shape
        b, g, t = state.cross_mask.shape[0], state.group, state.length
        hidden = self.decoder.embed_tokens(tokens)  # [N, q, d]
        sa0 = self.decoder.block[0].layer[0].SelfAttention
        bias = sa0.compute_bias(q, t + q, device=tokens.device, past_seen_tokens=t)  # [1, h, q, t+q]
        if q > 1:  # causal mask inside the new tokens
            causal = torch.ones(q, t + q, dtype=torch.bool, device=tokens.device).tril(diagonal=t)
            bias = bias.masked_fill(~causal, torch.finfo(bias.dtype).min)
        if state.gate is not None and t + q > state.gate_from:
            bias = bias + view_bias(state.gate.to(bias.dtype), state.gate_from, t, q)
        first = not state.self_k
        for i, block in enumerate(self.decoder.block):
            sa_layer, ca_layer, ff_layer = block.layer
            sa = sa_layer.SelfAttention
            x = sa_layer.layer_norm(hidden)
            k, v = self._heads(sa.k(x)), self._heads(sa.v(x))
            if not first:
                k = torch.cat([state.self_k[i], k], dim=2)
                v = torch.cat([state.self_v[i], v], dim=2)
            if first:
                state.self_k.append(k)
                state.self_v.append(v)
            else:
                state.self_k[i], state.self_v[i] = k, v
            qh = self._heads(sa.q(x))  # [N, h, q, d_kv]
            scores = qh @ k.transpose(-1, -2)  # [N, h, q, t_seq + q]
            tp = state.prefix_length
            if tp:  # the user's shared prefix, queries of its g sequences folded: [B, h, g·q, t_prefix]
                shared = self._fold(qh, b, g) @ state.prefix_k[i]
                scores = torch.cat([self._unfold(shared, b, g, q), scores], dim=-1)
            weights = (scores + bias.to(x.dtype)).softmax(-1)  # [N, h, q, t + q]
            out = weights[..., tp:] @ v  # [N, h, q, d_kv]
            if tp:
                out = out + self._unfold(self._fold(weights[..., :tp], b, g) @ state.prefix_v[i], b, g, q)
            out = out.transpose(1, 2).reshape(n, q, -1)
            hidden = hidden + sa.o(out)

            ca = ca_layer.EncDecAttention
            x = ca_layer.layer_norm(hidden)
            # fold the group into the query axis: [N, h, q, d_kv] → [B, h, g·q, d_kv]
            scores = self._fold(self._heads(ca.q(x)), b, g) @ state.cross_k[i] + state.cross_mask  # [B, h, g·q, S]
            out = self._unfold(scores.softmax(-1) @ state.cross_v[i], b, g, q)  # [N, h, q, d_kv]
            out = out.transpose(1, 2).reshape(n, q, -1)
            hidden = hidden + ca.o(out)
            hidden = ff_layer(hidden)
        state.length = t + q
        return self.decoder.final_layer_norm(hidden)
