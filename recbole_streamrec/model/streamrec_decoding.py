"""How STREAM-Rec's policy decodes: think, then recommend (inference), and the rollouts GRPO learns from.

:class:`ReasoningDecoding` is a mixin of :class:`~recbole_streamrec.model.streamrec.STREAMRec`; it reads the
model's reasoning keys and helpers (``n_reasoning``, ``step_codes``, ``separated``, ``_close_trace``,
``annotate``, …) and :class:`~recbole_streamrec.model.generative.GenerativeRecommender`'s T5 pieces (``encode``,
``logits``, ``decode_hidden``, ``step_fn``, ``trie``). The maths of each stage's training stays in
``streamrec.py``; what the model does with a trained policy is here (SPEC §5b, the module docstring of
``streamrec.py``):

* **Inference** (``reasoning_decoding``): ``greedy`` / ``sample`` / ``beam`` commit to one trace of
  ``inference_reasoning_steps`` tokens, then beam-search the item's codes; ``joint`` (default) keeps a beam of
  traces and scores an item by its marginal over them; ``oracle`` feeds the target's own annotation (an upper
  bound). After stage 1 the prefix is the k·m neighbour codes (k = ``pt_neighbours``); ``direct_inference``
  evaluates the direct decoder with no prefix (TIGER).
* **GRPO** (stage 3; the algorithm is in :mod:`recbole_streamrec.trainer.grpo`): sampled rollouts with
  level-restricted, free or trie-constrained item tokens, ranked beam rollouts, and the log-probabilities the
  policy-gradient step and the rewards need.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_streamrec.model.beam_search import constrained_beam_search
from recbole_streamrec.model.t5_decoding import CachedT5Decoder, DecoderState
from recbole_streamrec.tokenizer.codes import FIRST_CODE

ITEM_DECODINGS = ("level", "free", "trie")  # how a rollout draws the item's tokens (:meth:`ReasoningDecoding.rollout`)


class ReasoningDecoding:
    """Decoding with the reasoning policy (a :class:`STREAMRec` mixin; see the module docstring)."""

    # ---- inference: think, then constrained beam search ---------------------------------------------
    def prefix_steps(self) -> int:
        """Tokens decoded before the item: none for the direct decoder, the k·m neighbour codes after stage 1,
        else ``inference_reasoning_steps``."""
        if self.direct_inference:
            return 0
        return self.pt_neighbours * self.n_codes if self.stage == "pretrain" else self.inference_steps

    def inference_decoder(self):
        """The decoder inference runs: the direct one (TIGER's shape) with ``direct_inference``, else the policy's."""
        return self.direct_decoder if self.direct_inference else self.t5.decoder

    def _mask_to_step_codes(self, logits: Tensor, step: int) -> Tensor:
        """``logits`` ``[N, V]`` with every token outside prefix step ``step``'s codes (:meth:`step_codes`) at −inf, in place."""
        start, end = self.step_codes(step)
        logits[:, :start] = float("-inf")
        logits[:, end:] = float("-inf")
        return logits

    def _code_logp(self, hidden: Tensor, step: int = 0) -> Tensor:
        """Log-probabilities of prefix token ``step`` over its codes (:meth:`step_codes`), ``[N, V]``."""
        return F.log_softmax(self._mask_to_step_codes(self.logits(hidden).float(), step), dim=-1)

    def decode_prefix(self, cached: CachedT5Decoder, state: DecoderState, batch: int) -> Tensor:
        """Generate the free prefix (greedy | sample | beam), feed it, return first-item-code log-probs."""
        return self.think(cached, state, batch)[0]

    def think(self, cached: CachedT5Decoder, state: DecoderState, batch: int) -> tuple[Tensor, Tensor]:
        """:meth:`decode_prefix` that also returns the prefix it generated, ``([B, V], [B, steps])``."""
        steps = self.prefix_steps()
        self.gate_trace(state, steps)
        hidden = cached.step(self.start_tokens(batch, self.item_codes.device), state)[:, -1]
        tokens = torch.zeros(batch, 0, dtype=torch.long, device=hidden.device)
        if self.reasoning_decoding == "beam" and steps > 0:
            hidden, tokens = self._beam_prefix(cached, state, hidden, steps)
        else:
            for step in range(steps):
                logp = self._code_logp(hidden, step)
                if self.reasoning_decoding == "sample":
                    token = torch.multinomial((logp / self.sample_temperature).softmax(-1), 1)
                else:
                    token = logp.argmax(dim=-1, keepdim=True)
                tokens = torch.cat([tokens, token], dim=1)
                hidden = cached.step(token, state)[:, -1]
        hidden = self._close_trace(cached, state, hidden, steps)
        return F.log_softmax(self.logits(hidden).float(), dim=-1), tokens

    @torch.no_grad()
    def recommend(self, interaction, k: int = 10) -> tuple[Tensor, Tensor, Tensor]:
        """``(reasoning tokens [B, steps], top-k items [B, k], their log-probabilities [B, k])`` (explain)."""
        beam = max(k, self.beam_size)
        if self._joint():
            items, scores, tokens = self._joint_search(interaction, beam)
            return tokens, items[:, :k], scores[:, :k]
        with self._amp():
            enc, mask = self.encode(interaction)
            cached = CachedT5Decoder(self.inference_decoder())
            state = cached.start(enc, mask)
            first, tokens = self.think(cached, state, enc.shape[0])
            items, scores = constrained_beam_search(self.step_fn(cached), first, state, self.trie, beam_size=beam)
        return tokens, items[:, :k], scores[:, :k]

    def _joint(self) -> bool:
        """Whether inference searches traces and items together (``joint`` with a prefix to decode)."""
        return self.reasoning_decoding == "joint" and self.prefix_steps() > 0

    @torch.no_grad()
    def generate_items(self, interaction, beam_size: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Top items and scores ``[B, beam]``; ``reasoning_decoding: joint`` searches traces and items together.

        ``joint``: a beam of ``reasoning_beam`` traces, each with its log-probability, then one item beam of
        ``beam_size`` over all (trace, item) continuations, so the top-k may follow different traces; an item
        reached through several traces scores ``log Σ_traces π(trace | x) · π(item | x, trace)`` (the marginal
        over the traces the beam kept). Greedy or beam decoding commits to one trace, and every item of the
        top-k must then follow that trace.
        """
        steps = self.prefix_steps()
        if self.reasoning_decoding == "oracle" and steps > 0 and self.stage != "pretrain":
            return self._generate_after_oracle(interaction, beam_size or self.beam_size, steps)
        if not self._joint():
            return super().generate_items(interaction, beam_size)
        return self._joint_search(interaction, beam_size or self.beam_size)[:2]

    def _joint_search(self, interaction, beam: int) -> tuple[Tensor, Tensor, Tensor]:
        """``joint`` decoding (:meth:`generate_items`): items and marginal scores ``[B, beam]``, and the most
        likely trace ``[B, steps]``."""
        with self._amp():
            enc, mask = self.encode(interaction)
            decoder, steps = self.inference_decoder(), self.prefix_steps()
            items, scores, traces, _ = self._trace_item_beam(decoder, enc, mask, steps, beam)
        marginal = torch.full((enc.shape[0], self.n_items), float("-inf"), device=scores.device)
        for j in range(beam):  # logsumexp over the traces that reach the same item
            column = marginal.gather(1, items[:, j : j + 1])
            marginal.scatter_(1, items[:, j : j + 1], torch.logaddexp(column, scores[:, j : j + 1]))
        marginal[:, 0] = float("-inf")  # dead beams point at the padding item
        scores, items = marginal.topk(min(beam, self.n_items), dim=-1)
        return items.masked_fill(scores == float("-inf"), 0), scores, traces[:, 0]  # traces sorted: 0 is the best

    def _trace_item_beam(self, decoder, enc: Tensor, mask: Tensor, steps: int, beam: int):
        """A beam of ``reasoning_beam`` traces of ``steps`` tokens, then one item beam of ``beam`` over all
        (trace, item) continuations, ranked by log π(trace) + log π(item | trace): ``(items [B, beam], scores
        [B, beam], traces [B, W, steps], origins [B, beam])``; ``origins`` names each item's trace in ``traces``
        (W = 1 when ``steps`` is 0)."""
        cached = CachedT5Decoder(decoder)
        state = cached.start(enc, mask)
        self.gate_trace(state, steps)
        hidden = cached.step(self.start_tokens(enc.shape[0], enc.device), state)[:, -1]
        hidden, traces, trace_logp = self._beam_prefix(cached, state, hidden, steps, keep_all=True)
        hidden = self._close_trace(cached, state, hidden, steps)
        first = F.log_softmax(self.logits(hidden).float(), dim=-1) + trace_logp.reshape(-1, 1)  # [B·W, V]
        items, scores, origins = constrained_beam_search(self.step_fn(cached), first, state, self.trie,
                                                         beam_size=beam, beams_per_user=trace_logp.shape[1],
                                                         return_origins=True, distinct=self.item_beam == "distinct")
        return items, scores, traces, origins

    def _generate_after_oracle(self, interaction, beam: int, steps: int) -> tuple[Tensor, Tensor]:
        """``reasoning_decoding: oracle`` (a diagnostic upper bound, it reads the target): the item beam after
        the trace the annotation writes for the row's own target (its first ``steps`` tokens)."""
        with self._amp():
            think = self.annotate(interaction)[:, :steps]  # [B, ≤ steps], needs the target item
            enc, mask = self.encode(interaction)
            cached = CachedT5Decoder(self.inference_decoder())
            state = cached.start(enc, mask)
            self.gate_trace(state, think.shape[1])
            prefix = torch.cat([self.start_tokens(enc.shape[0], enc.device), self.separated(think)], dim=1)
            first = F.log_softmax(self.logits(cached.step(prefix, state)[:, -1]).float(), dim=-1)
            return constrained_beam_search(self.step_fn(cached), first, state, self.trie, beam_size=beam)

    def _beam_prefix(self, cached: CachedT5Decoder, state: DecoderState, hidden: Tensor,
                     steps: int, keep_all: bool = False):
        """Beam search over ℂ for the reasoning prefix: the best sequence per user ``(hidden, tokens)``, or
        with ``keep_all`` every beam ``(hidden [B·W, d], tokens [B, W, steps], log-probs [B, W])``."""
        batch, width = hidden.shape[0], self.reasoning_beam
        scores = hidden.new_zeros(batch, 1, dtype=torch.float)  # [B, beams]
        offsets = torch.arange(batch, device=hidden.device).unsqueeze(1)
        seqs = torch.zeros(batch, 1, 0, dtype=torch.long, device=hidden.device)  # [B, beams, t]
        for step in range(steps):
            logp = self._code_logp(hidden, step)  # [B·beams, V]
            beams, vocab = scores.shape[1], logp.shape[-1]
            total = (scores.unsqueeze(-1) + logp.view(batch, beams, vocab)).view(batch, -1)
            scores, flat = total.topk(width, dim=-1)  # [B, width]
            origin, token = flat // vocab, flat % vocab
            seqs = torch.cat([seqs.gather(1, origin.unsqueeze(-1).expand(-1, -1, seqs.shape[2])),
                              token.unsqueeze(-1)], dim=2)  # [B, width, t + 1]
            state.select((origin + offsets * beams).reshape(-1))  # also expands 1 → width beams
            hidden = cached.step(token.reshape(-1, 1), state)[:, -1]
        if keep_all:
            return hidden, seqs, scores
        best = torch.arange(batch, device=hidden.device) * width  # topk is sorted: beam 0 is the best
        state.select(best)
        return hidden[best], seqs[:, 0]

    # ---- stage 3: what GRPO needs from the policy (the algorithm is in the trainer) ------------------
    @torch.no_grad()
    def rollout(self, enc: Tensor, mask: Tensor, group: int, *, temperature: float = 1.0,
                item_decoding: str = "level") -> tuple[Tensor, Tensor]:
        """Sample ``group`` rollouts per user: l reasoning tokens from ℂ, then m item tokens.

        ``item_decoding`` (SPEC §5b): ``level`` — item token d is drawn among level d's K codes (the tuple
        may still be no item, so the format reward fires); ``free`` — any token of ℂ; ``trie`` — only
        prefixes of real items. Returns tokens ``[B·G, l + m]`` and the mean decoder state ``[B·G, d]``.
        """
        if item_decoding not in ITEM_DECODINGS:
            raise ValueError(f"item_decoding must be one of {ITEM_DECODINGS}, not {item_decoding!r}")
        constrained = item_decoding == "trie"
        cached = CachedT5Decoder(self.t5.decoder)
        state = cached.start(enc, mask)
        self.gate_trace(state, self.n_reasoning)
        state.expand(group)
        n = enc.shape[0] * group
        token = self.start_tokens(n, enc.device)
        prefix = torch.zeros(n, dtype=torch.long, device=enc.device)  # trie prefix of the item part
        tokens, states = [], []
        for step in range(self.n_reasoning + self.n_codes):
            hidden = cached.step(token, state)[:, -1]
            level = step - self.n_reasoning
            if level == 0 and self._separates(self.n_reasoning):  # the separator is fed, not drawn
                states.append(hidden)
                hidden = self._close_trace(cached, state, hidden, self.n_reasoning)
            states.append(hidden)
            logits = self.logits(hidden).float() / temperature
            logits[:, :FIRST_CODE] = float("-inf")
            if level < 0:  # a reasoning token: its step's codes (all of ℂ with reasoning_levels: all)
                self._mask_to_step_codes(logits, step)
            if item_decoding != "free" and level >= 0:
                allowed = self.trie.step(level, prefix) >= 0 if constrained else True  # [N, K]
                start = FIRST_CODE + level * self.codebook_size
                mask_v = torch.zeros_like(logits, dtype=torch.bool)
                mask_v[:, start : start + self.codebook_size] = allowed
                logits = logits.masked_fill(~mask_v, float("-inf"))
            token = torch.multinomial(logits.softmax(-1), 1)  # [N, 1]
            if constrained and level >= 0:
                code = token.squeeze(1) - FIRST_CODE - level * self.codebook_size
                prefix = self.trie.step(level, prefix).gather(1, code.unsqueeze(1)).squeeze(1)
            tokens.append(token)
        return torch.cat(tokens, dim=1), torch.stack(states, dim=1).mean(dim=1)

    @torch.no_grad()
    def beam_rollout(self, enc: Tensor, mask: Tensor, group: int) -> tuple[Tensor, Tensor]:
        """The ``group`` most likely (trace, item) pairs per user instead of samples (``rl_rollout: beam``).

        Joint decoding's search before it merges traces: a beam of ``reasoning_beam`` traces of l tokens, then
        one trie-constrained item beam of ``max(group, beam_size)`` over all (trace, item) continuations, ranked
        by log π(trace) + log π(item | trace); its ``group`` best pairs are the rollouts, best first. The group
        is then the top of the policy's own list, so the group advantage pushes the target up and the wrong
        items ranked above it down (not in the paper). Returns tokens ``[B·G, l + m]`` and the mean decoder
        state ``[B·G, d]``, as :meth:`rollout`.
        """
        batch, steps = enc.shape[0], self.n_reasoning
        items, _, traces, origins = self._trace_item_beam(self.t5.decoder, enc, mask, steps,
                                                      max(group, self.beam_size))
        item, origin = items[:, :group], origins[:, :group]  # [B, G]
        trace = traces.gather(1, origin.unsqueeze(-1).expand(-1, -1, steps))  # [B, G, l]
        item = item.clamp(min=1)  # a dead beam (only with fewer than G items in all) stands for item 1
        tokens = torch.cat([trace, self.target_tokens(item)], dim=-1).view(batch * group, -1)
        hidden = self.policy_hidden(self._with_separator(tokens), steps, enc.repeat_interleave(group, 0),
                                    mask.repeat_interleave(group, 0))
        return tokens, hidden.mean(dim=1)

    @torch.no_grad()
    def candidate_logp(self, enc: Tensor, mask: Tensor, think: Tensor, candidates: Tensor) -> Tensor:
        """log π_θ(codes(c) | x, think) for candidates ``[N, C]`` after reasoning ``think`` ``[N, l]``.

        ``N = B·G`` rollouts share their user's encoder output; the prefix is decoded once per rollout,
        then every candidate's m codes are fed in one step of ``m`` tokens (cache expanded C times).
        """
        n, c = candidates.shape
        cached = CachedT5Decoder(self.t5.decoder)
        state = cached.start(enc, mask)
        self.gate_trace(state, think.shape[1])
        state.expand(n // enc.shape[0])
        start = self.start_tokens(n, enc.device)
        prefix = torch.cat([start, self.separated(think)], dim=1)  # [N, 1 + l (+ 1)]
        if prefix.shape[1] > 1:
            cached.step(prefix[:, :-1], state)
        state.expand(c)
        codes = self.target_tokens(candidates).reshape(n * c, self.n_codes)  # [N·C, m]
        feed = torch.cat([prefix[:, -1:].repeat_interleave(c, 0), codes[:, :-1]], dim=1)  # [N·C, m]
        logp = F.log_softmax(self.logits(cached.step(feed, state)).float(), dim=-1)  # [N·C, m, V]
        return logp.gather(2, codes.unsqueeze(-1)).squeeze(-1).sum(-1).view(n, c)

    def rollout_logp(self, enc: Tensor, mask: Tensor, tokens: Tensor) -> Tensor:
        """Per-token log π(tokens) ``[N, T]`` by teacher forcing; ``enc`` ``[N, S, d]`` (one per rollout).

        With ``trace_separator`` the separator is fed after the l reasoning tokens but is no token of the rollout:
        it is not drawn, so it has no log-probability here.
        """
        labels = self._with_separator(tokens)
        hidden = self.policy_hidden(labels, self.n_reasoning, enc, mask)
        logp = F.log_softmax(self.logits(hidden).float(), dim=-1).gather(2, labels.unsqueeze(-1)).squeeze(-1)
        if labels.shape[1] == tokens.shape[1]:
            return logp
        l = self.n_reasoning  # noqa: E741
        return torch.cat([logp[:, :l], logp[:, l + 1 :]], dim=1)

    def _with_separator(self, tokens: Tensor) -> Tensor:
        """Rollout tokens ``[N, l + m]`` with the separator after the l reasoning tokens (unchanged without one)."""
        l = self.n_reasoning  # noqa: E741
        return torch.cat([self.separated(tokens[:, :l]), tokens[:, l:]], dim=1)
