"""KV-cached incremental decoding over a ``transformers`` T5 decoder, for beams and groups.

Beam search and GRPO rollouts decode many sequences per user (``group`` of them: beams, rollouts or
candidate items) against the *same* encoder output. Expanding the encoder-side keys/values to every
sequence (what ``generate`` does) costs ``group×`` memory and bandwidth at every step. Here the
cross-attention keys/values are computed once per user (``[B, h, S, d_kv]``) and the queries of a user's
sequences are folded into one attention call, while the small self-attention cache is per sequence.

The maths is exactly T5's (same modules, same weights, relative position bias, no 1/√d scaling); the test
suite checks it against the uncached ``transformers`` forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers.models.t5.modeling_t5 import T5Stack


@dataclass
class DecoderState:
    """Cache for ``N = B · group`` sequences decoding against ``B`` encoder outputs."""

    self_k: list[Tensor]  # per layer [N, h, t, d_kv]
    self_v: list[Tensor]
    cross_k: list[Tensor]  # per layer [B, h, d_kv, S] (stored transposed for the score matmul)
    cross_v: list[Tensor]  # per layer [B, h, S, d_kv]
    cross_mask: Tensor  # [B, 1, 1, S] additive (0 or -inf-ish)
    group: int
    length: int = 0

    def select(self, index: Tensor) -> None:
        """Keep sequences ``index`` ``[N']``; each must stay with its own user (beam reordering)."""
        self.self_k = [k.index_select(0, index) for k in self.self_k]
        self.self_v = [v.index_select(0, index) for v in self.self_v]
        self.group = index.numel() // self.cross_mask.shape[0]

    def expand(self, factor: int) -> None:
        """Repeat every sequence ``factor`` times (``[N] → [N·factor]``, copies adjacent)."""
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
            scores = self._heads(sa.q(x)) @ k.transpose(-1, -2) + bias.to(x.dtype)  # [N, h, q, t+q]
            out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, q, -1)
            hidden = hidden + sa.o(out)

            ca = ca_layer.EncDecAttention
            x = ca_layer.layer_norm(hidden)
            # fold the group into the query axis: [N, h, q, d_kv] → [B, h, g·q, d_kv]
            qh = self._heads(ca.q(x)).reshape(b, g, self.n_heads, q, self.d_kv)
            qh = qh.transpose(1, 2).reshape(b, self.n_heads, g * q, self.d_kv)
            scores = qh @ state.cross_k[i] + state.cross_mask  # [B, h, g·q, S]
            out = scores.softmax(-1) @ state.cross_v[i]  # [B, h, g·q, d_kv]
            out = out.reshape(b, self.n_heads, g, q, self.d_kv).permute(0, 2, 3, 1, 4).reshape(n, q, -1)
            hidden = hidden + ca.o(out)
            hidden = ff_layer(hidden)
        state.length = t + q
        return self.decoder.final_layer_norm(hidden)
