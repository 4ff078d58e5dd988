"""STREAM-Rec: slow-thinking generative recommendation (SPEC §5).

The policy π_θ is the shared T5 encoder + reasoning decoder + tied output layer. It first emits ``l``
reasoning tokens from the code vocabulary ℂ, then the target item's ``m`` codes. A **direct decoder**
(TIGER's shape, same encoder and embeddings) is trained beside it in stage 1 and becomes, frozen, the
reference π_ref of stages 2–3. ``MLP_r`` (residual head) and ``MLP_s`` (state head) drive the iterative
residual inference that annotates reasoning traces (stage 2).

This file holds the model's maths per stage; how the policy decodes (inference, GRPO's rollouts) is in
:mod:`recbole_streamrec.model.streamrec_decoding`, and :class:`~recbole_streamrec.trainer.STREAMRecTrainer`
decides which stage runs and hands checkpoints over on disk. ``self.stage`` ∈ {pretrain, sft, rl} selects the
training loss and the inference prefix (2·m free neighbour tokens after pretraining, else
``inference_reasoning_steps`` reasoning tokens).

What SPEC §5b settles (each a key in ``properties/model/STREAMRec.yaml``):

* **The first annotation is already informative.** With ``state_head: codes`` (default) the state is
  ``s_i = Σ_{j≤i} sg[E_{o_j}] + MLP_s(Σ_{j≤i} d_j)``, MLP_s's last layer zero at initialisation; with
  ``residual_head: identity`` (default) ``MLP_r(x) = x + f(x)``, ``f``'s last layer zero. At the start
  ``r_1 = t − s_0 = t`` and ``r_{i+1} = t − Σ_{j≤i} E_{o_j}``: the first annotation is plain residual
  quantisation of the target representation over ℂ (coarse-to-fine, ``‖t − s_i‖`` falling with i), and
  training lets the decoder states correct it. Residuals and codes are compared on one scale: t (the
  *mean* of the target's m code embeddings) is taken as ``m·t = Σ_j E[codes(target)_j]``, what m codes
  reconstruct, in the annotation, L_Quant, L_State and the logged distances. ``state_head:
  identity`` is ``s_i = x + f(x)``, ``x = Σ d_j`` (r_1 = t − d_0); ``plain`` is the paper's MLP.
* **Where the trace starts** (``trace_start``, not in the paper). ``zero`` (default): ``s_0 = MLP_s(d_0)``, zero at
  initialisation, so the first annotation quantises t itself and spells the target's own semantic ID
  (``spells_target`` ≈ 1 on Scientific): a trace that is the answer. ``belief``: with ``state_head: codes`` the
  code sum starts at stage 1's belief ``b`` instead of 0, ``s_i = b + Σ_{j≤i} sg[E_{o_j}] + MLP_s(Σ_{j≤i} d_j)``,
  where ``b = Σ_j Σ_c π_ref(c | x, greedy codes before level j) E_c`` is the expected target representation
  under the frozen stage-1 direct decoder (:meth:`belief`, m·t units, a function of the history only). The
  trace then quantises ``t − b``, coarse to fine: how the model's state moves from stage 1's answer to the
  target, so two users with the same target get different traces.
* **E is not dragged by L_Quant** (``quant_update_codebook: false``): neither its codebook term nor the
  commitment term (through t) moves the token table. ``quant_update_state: false`` (default) also keeps the
  commitment term off the states (MLP_s and the decoder): MLP_r alone follows the codes, L_State alone
  shapes s_i. ``true`` is the paper's gradient (r = MLP_r(t − s) moves s too).
* **L_State** compares negative Euclidean distances over τ with a detached t (``state_similarity:
  distance``, default, τ = 10: the state is pulled *to* t on t's scale, so the logged ‖t − s_i‖ is what is
  trained), cosines over τ with a detached t (``cosine``, τ = 0.1: MLP_s's length is left free) or the
  paper's raw dot product with t not detached (``dot``). Measured on amazon2018-scientific
  (``docs/results/streamrec-scientific-state-loss/``): with cosine (and with distance at τ = 1, or with L_Quant
  moving the states) the second annotation's ‖t − s_i‖ rises at the last steps, because MLP_s adds a vector of
  free length; with the defaults it falls at every step, at the same NDCG@10.
* **Trace separator** (``trace_separator: true``, not in the paper): after the l reasoning tokens the decoder
  is fed its start token (PAD) once more, so it reads ``[start, o_1..o_l, start, codes(i)]``. Without it the
  item's codes move from positions 0..m−1 (stage 1's direct decoder, TIGER) to l..l+m−1 after tokens that
  decoder never saw, and SFT must first re-learn where the item starts; with it the item's codes follow the
  start token as in stage 1, with the trace as extra context on the left. The separator is no label (the loss
  ignores PAD) and no rollout token (it is fed, not drawn).
* **Trace gate** (``trace_gate``, needs the separator; not in the paper): the item's queries (the separator and
  the item's codes) read the start token and the trace through a learnt per-head bias ``g`` added to their
  self-attention logits, ``g`` starting at ``trace_gate`` (e.g. −8: closed). At the hand-over the item then sees
  ``[start, codes(i)]`` exactly as stage 1's direct decoder did, so the policy scores every item as stage 1
  after any trace; SFT trains the gate (``trace_gate_learning_rate``, no weight decay), which opens it only
  as far as reading the trace lowers L_SFT (measured: from −8 and from −3 it first closed further). Without
  it the item after an unseen trace is not stage 1's prediction
  (``docs/results/streamrec-scientific-paper-attention-lr/``: the first item code's NLL 4.02 right after a
  trace that spells it) and joint decoding loses 12% of stage 1's NDCG@10 before any SFT step.
* **Distinct item beam** (``item_beam: distinct``, not in the paper): joint decoding keeps at most one beam per
  item prefix, the best trace's, so its ``beam_size`` beams are different items (an item's score is then its
  best trace's, not a sum over traces). With ``pairs`` an item whose score does not depend on the trace fills
  one beam per trace, and the top-10 has holes (8.77 items on average at the hand-over).
* **Constant trace** (``reasoning_trace: constant``): one fixed trace for every row, the ablation.
* **Collaborative trace** (``reasoning_trace: collaborative``, not in the paper): the trace is the target's
  semantic ID in a second view, the RQ-VAE codes of ``trace_vector_source`` item vectors (default
  ``collaborative``: SASRec item embeddings of the training split) on their own tokens — l ≤ ``rqvae_levels``
  levels of K tokens after ℂ, token i among level i's K — so the model first names the target's behavioural
  cluster, coarse to fine, then its text-based ID. The trace is that lookup (no iterative inference, so L_Quant
  and L_State are 0). At the hand-over its tokens' rows of E keep their random initialisation (``trace_token_init:
  random``, default) or start at the mean t of their items (``members``, :meth:`init_trace_tokens`). Measured because the annotated trace spells the target's own ID (a trace that says
  nothing the item does not) and a constant trace ties it.
* **One codebook per step** (``reasoning_levels: cyclic``, default): reasoning token i is chosen among level
  (i mod m)'s K codes — in the annotation's argmin, in inference and in GRPO rollouts — as residual
  quantisation quantises step i with codebook i. The trace then runs coarse to fine (its first token is a
  level-0 code, shared by many items); over all of ℂ (``all``) the argmin took the largest residual
  component first, usually a level-2/3 code that almost singles out one item.
* **Oracle trace** (``reasoning_decoding: oracle``, evaluation only): the annotation of the row's own target is
  fed as the trace, an upper bound of what a trace can give (the ablation's "oracle").
* **Joint decoding** (``reasoning_decoding: joint``, default): ``reasoning_beam`` traces, then one item beam
  over all (trace, item) continuations; an item's score is its marginal over the kept traces. A greedy trace
  commits every item of the top-k to one trace.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from transformers.models.t5.modeling_t5 import T5Stack

from recbole_streamrec.data.neighbours import item_neighbours
from recbole_streamrec.data.semantic_ids import semantic_ids_of
from recbole_streamrec.model.generative import GenerativeRecommender
from recbole_streamrec.model.losses import (
    default_step_weights, dpo_loss, quantization_loss, sequence_log_prob, state_contrastive_loss,
    token_cross_entropy,
)
from recbole_streamrec.model.streamrec_decoding import ReasoningDecoding
from recbole_streamrec.model.t5_decoding import CachedT5Decoder, DecoderState, view_bias
from recbole_streamrec.tokenizer.codes import FIRST_CODE, PAD, codes_to_tokens, vocab_size

STAGES = ("pretrain", "sft", "rl")
STATE_TEMPERATURE = {"cosine": 0.1, "distance": 10.0}  # τ of ``state_temperature: ~``
HEAD_KINDS = {"residual_head": ("identity", "plain"), "state_head": ("codes", "identity", "plain")}
TRACES = ("annotated", "constant", "collaborative")
TRACE_STARTS = ("zero", "belief")


class Head(nn.Sequential):
    """``Linear(d, d) → GELU → Linear(d, d)`` (MLP_r and MLP_s), optionally ``x + ·`` and zero last layer.

    ``skip=True, zero_init=True`` is the identity at initialisation; ``zero_init`` alone starts at 0.
    """

    def __init__(self, d: int, *, skip: bool = False, zero_init: bool = False) -> None:
        super().__init__(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.skip = skip
        if zero_init:
            nn.init.zeros_(self[2].weight)
            nn.init.zeros_(self[2].bias)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        return x + out if self.skip else out


def head(d: int) -> nn.Sequential:
    """The paper's plain ``Linear(d, d) → GELU → Linear(d, d)``."""
    return Head(d)


def _choice(config, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = config[key] or default
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, not {value!r}")
    return value


def trace_statistics(traces: Tensor, target_tokens: Tensor, distances: Tensor) -> dict:
    """What an annotation says about itself (logged at every annotation).

    Args:
        traces: ``[N, l]`` reasoning tokens o_1..o_l.
        target_tokens: ``[N, m]`` the target items' code tokens.
        distances: ``[N, l + 1]`` ``‖t − s_i‖`` for i = 0..l.

    Returns:
        ``distinct_tokens``, ``distinct_traces``, ``distinct_targets``, ``first_in_target_l01`` (share of rows
        whose o_1 is the target's level-0 or level-1 code token), ``spells_target`` (share of rows whose first
        min(l, m) tokens are the target's own first codes, in order: a trace that is the answer, not a route to
        it) and ``distance`` (mean ‖t − s_i‖ per i).
    """
    stats = {"distinct_targets": torch.unique(target_tokens, dim=0).shape[0],
             "distance": [round(v, 4) for v in distances.float().mean(dim=0).tolist()]}
    if traces.shape[1] == 0:
        return {"distinct_tokens": 0, "distinct_traces": 1, **stats, "first_in_target_l01": 0.0, "spells_target": 0.0}
    hit = (traces[:, :1] == target_tokens[:, :2]).any(dim=1).float().mean().item()
    n = min(traces.shape[1], target_tokens.shape[1])
    spells = (traces[:, :n] == target_tokens[:, :n]).all(dim=1).float().mean().item()
    return {"distinct_tokens": traces.unique().numel(), "distinct_traces": torch.unique(traces, dim=0).shape[0],
            **stats, "first_in_target_l01": hit, "spells_target": spells}


class STREAMRec(ReasoningDecoding, GenerativeRecommender):
    """Three-stage slow-thinking recommender; see the module docstring and SPEC §5."""

    REASONING_FIELD = "reasoning_tokens"

    def __init__(self, config, dataset):
        self.reasoning_trace = _choice(config, "reasoning_trace", "annotated", TRACES)  # before the vocabulary
        super().__init__(config, dataset)
        dec_config = copy.deepcopy(self.t5.decoder.config)
        self.direct_decoder = T5Stack(dec_config)
        self.direct_decoder.set_input_embeddings(self.t5.shared)  # one embedding table E for everything
        self.residual_head = _choice(config, "residual_head", "identity", HEAD_KINDS["residual_head"])
        self.state_head = _choice(config, "state_head", "codes", HEAD_KINDS["state_head"])
        identity_r = self.residual_head == "identity"
        self.mlp_r = Head(self.d_model, skip=identity_r, zero_init=identity_r)
        self.mlp_s = Head(self.d_model, skip=self.state_head == "identity", zero_init=self.state_head != "plain")
        self.quant_update_codebook = bool(config["quant_update_codebook"])
        self.quant_update_state = bool(config["quant_update_state"])  # unset: False (see the module docstring)
        self.state_similarity = _choice(config, "state_similarity", "distance", ("distance", "cosine", "dot"))
        self.code_scale = float(self.n_codes) if self.state_head == "codes" else 1.0  # units of t (see above)
        self.trace_start = _choice(config, "trace_start", "zero", TRACE_STARTS)
        if self.trace_start == "belief" and self.state_head != "codes":
            raise ValueError(f"trace_start: belief needs state_head: codes, not {self.state_head!r}")
        self.reasoning_levels = _choice(config, "reasoning_levels", "cyclic", ("cyclic", "all"))
        self.direct_inference = False  # True: evaluate the direct decoder with no prefix (TIGER)
        self.trace_separator = bool(config["trace_separator"])
        gate = config["trace_gate"]
        if gate is not None and not self.trace_separator:
            raise ValueError("trace_gate needs trace_separator: true (the gate closes the item's view of what "
                             "comes before the separator)")
        heads = self.t5.config.num_heads
        self.trace_gate = None if gate is None else nn.Parameter(torch.full((heads,), float(gate)))
        self.item_beam = _choice(config, "item_beam", "pairs", ("pairs", "distinct"))
        self.n_reasoning = config["reasoning_steps"]  # l
        self.inference_steps = config["inference_reasoning_steps"]
        if self.inference_steps is None:
            self.inference_steps = self.n_reasoning
        if self.reasoning_trace == "collaborative":
            self._build_collaborative_trace(config, dataset)
        self.reasoning_decoding = config["reasoning_decoding"] or "greedy"
        self.reasoning_beam = config["reasoning_beam"] or 4
        self.sample_temperature = config["sample_temperature"] or 1.0
        self.pt_neighbours = config["pt_neighbours"]  # k
        self.pt_temperature = config["pt_temperature"]
        self.dpo_beta, self.dpo_negative_pool = config["dpo_beta"], config["dpo_negative_pool"]
        self.weights = {k: config[f"{k}_weight"] for k in ("dpo", "quant", "state")}
        self.quant_beta, self.state_temperature = config["quant_beta"], config["state_temperature"]
        if self.state_similarity == "dot":  # the paper's raw dot product has no τ
            self.state_temperature = 1.0
        elif self.state_temperature is None:  # τ on the similarity's scale: a cosine is ≤ 1, a distance ~ ‖t‖
            self.state_temperature = STATE_TEMPERATURE[self.state_similarity]
        # one neighbour table serves stage 1, DPO and the RL negatives (a tiny catalogue caps it)
        n_table = min(max(self.pt_neighbours, self.dpo_negative_pool, config["rl_hard_negatives"]), self.n_items - 2)
        with torch.random.fork_rng():  # a cache miss must not change this model's initialisation
            table = torch.from_numpy(item_neighbours(config, dataset, n_table))
        self.register_buffer("neighbours", table, persistent=False)  # [n_items, n_table], most similar first
        self.stage = "pretrain"
        self._reference: Optional["STREAMRec"] = None  # frozen π_ref holder, never a submodule

    def extra_token_levels(self, config) -> int:
        """The collaborative trace's l levels of K tokens follow ℂ in the vocabulary."""
        return config["reasoning_steps"] if self.reasoning_trace == "collaborative" else 0

    def _build_collaborative_trace(self, config, dataset) -> None:
        """``trace_tokens`` ``[n_items, l]``: each item's collaborative semantic ID as trace tokens (module docstring)."""
        source = config["trace_vector_source"] or "collaborative"
        levels = config["rqvae_levels"]
        if not 0 < self.n_reasoning <= levels:
            raise ValueError(f"reasoning_steps ({self.n_reasoning}) must be 1..rqvae_levels ({levels}) with "
                             "reasoning_trace: collaborative: the trace is that many levels of the second ID")
        if self.inference_steps != self.n_reasoning:
            raise ValueError(f"inference_reasoning_steps ({self.inference_steps}) must equal reasoning_steps "
                             f"({self.n_reasoning}) with reasoning_trace: collaborative")
        with torch.random.fork_rng():  # a cache miss must not change this model's initialisation
            codes = torch.from_numpy(semantic_ids_of(config, dataset, source))[:, : self.n_reasoning]
        tokens = codes_to_tokens(codes, codebook_size=self.codebook_size) + self.n_codes * self.codebook_size
        tokens[0] = PAD  # the padding item
        self.register_buffer("trace_tokens", tokens, persistent=False)  # [n_items, l]

    @torch.no_grad()
    def init_trace_tokens(self) -> None:
        """Collaborative trace, at the hand-over (``trace_token_init: members``): the row of E of each trace
        token starts at the mean t (mean code embedding) of the items whose second ID has that code at that
        level, so the decoder taken from stage 1 already scores trace tokens by their items; a code no item
        has keeps its initialisation."""
        items = torch.arange(1, self.n_items, device=self.trace_tokens.device)
        t = self.target_repr(items).float()  # [I, d]
        tokens = self.trace_tokens[items].flatten()  # [I·l], item-major
        table = self.embeddings
        sums = torch.zeros(table.shape, device=t.device).index_add_(0, tokens, t.repeat_interleave(self.n_reasoning, 0))
        counts = torch.zeros(table.shape[0], device=t.device).index_add_(0, tokens, torch.ones_like(tokens, dtype=torch.float))
        used = counts > 0
        table[used] = (sums[used] / counts[used, None]).to(table.dtype)

    # ---- shared pieces ------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        self.stage = stage

    def set_reference(self, reference: Optional["STREAMRec"]) -> None:
        """π_ref: a frozen model whose encoder + direct decoder score items (stages 2–3)."""
        if reference is not None:
            reference.eval().requires_grad_(False)
        object.__setattr__(self, "_reference", reference)  # keep it out of parameters()/state_dict()

    @property
    def embeddings(self) -> Tensor:
        return self.t5.shared.weight  # E, [V, d]

    def code_embeddings(self) -> Tensor:
        return self.embeddings[FIRST_CODE:]  # E restricted to ℂ, [m·K, d]

    def target_repr(self, items: Tensor) -> Tensor:
        """t = mean_j E[codes(item)_j], ``[B, d]``."""
        return self.embeddings[self.target_tokens(items)].mean(dim=1)

    def step_codes(self, step: int) -> tuple[int, int]:
        """Token ids ``[start, end)`` a reasoning token at ``step`` (0-based) is drawn from: level ``step mod m``'s
        K codes with ``reasoning_levels: cyclic`` (residual quantisation's codebook per step), all of ℂ with ``all``."""
        if self.reasoning_levels == "all" and self.reasoning_trace != "collaborative":
            return FIRST_CODE, FIRST_CODE + self.n_codes * self.codebook_size
        # collaborative: level `step` of the second ID, whose levels follow the items' m
        level = self.n_codes + step if self.reasoning_trace == "collaborative" else step % self.n_codes
        start = FIRST_CODE + level * self.codebook_size
        return start, start + self.codebook_size

    def nearest_code(self, r: Tensor, step: int = 0) -> Tensor:
        """argmin_k ‖E_k − r‖ over the codes of ``step`` (:meth:`step_codes`) → token ids ``[...]`` for ``r`` ``[..., d]``."""
        start, end = self.step_codes(step)
        dist = torch.cdist(r.reshape(-1, r.shape[-1]).float(), self.embeddings[start:end].float())
        return (dist.argmin(dim=-1) + start).view(r.shape[:-1])

    def state(self, hidden_sum: Tensor, code_sum: Tensor) -> Tensor:
        """``s_i`` from ``Σ_{j≤i} d_j`` and ``Σ_{j≤i} E_{o_j}`` (both ``[..., d]``); see the module docstring."""
        s = self.mlp_s(hidden_sum)
        return s + code_sum.detach() if self.state_head == "codes" else s

    def trace_origin(self, interaction, t: Tensor, encoded: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """Where the code sum of the states starts, ``[B, d]``: 0, or stage 1's :meth:`belief` (``trace_start``)."""
        if self.trace_start == "zero":
            return torch.zeros_like(t)
        return self.belief(interaction, encoded).to(t.dtype)

    @torch.no_grad()
    def belief(self, interaction, encoded: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """Stage 1's expected target representation ``b``, ``[B, d]`` in m·t units (``trace_start: belief``).

        The frozen direct decoder of π_ref (this model's own before π_ref exists) decodes the m levels greedily
        from the history; ``b = Σ_j Σ_c p_j(c) E_c``, ``p_j`` its distribution over level j's K codes given the
        greedy codes before j, and ``E`` this model's token table (the one t is measured in). ``encoded``: π_ref's
        encoder output for the batch when the caller has it already (SFT shares it with DPO).
        """
        ref = self._reference if self._reference is not None else self
        training = ref.training
        ref.eval()  # no dropout in the belief (π_ref is always in eval mode; this model may be training)
        try:
            enc, mask = encoded if encoded is not None else ref.encode(interaction)
            cached = CachedT5Decoder(ref.direct_decoder)
            state = cached.start(enc, mask)
            token = self.start_tokens(enc.shape[0], enc.device)
            b = torch.zeros(enc.shape[0], self.d_model, device=enc.device)
            for level in range(self.n_codes):
                start = FIRST_CODE + level * self.codebook_size
                logits = ref.logits(cached.step(token, state)[:, -1]).float()[:, start : start + self.codebook_size]
                b = b + logits.softmax(dim=-1) @ self.embeddings[start : start + self.codebook_size].float()
                token = logits.argmax(dim=-1, keepdim=True) + start
        finally:
            ref.train(training)
        return b

    def constant_trace(self, n: int, device: torch.device) -> Tensor:
        """The ablation's one trace for every row, ``[n, l]``: code 0 of levels 0, 1, …, m−1, 0, …"""
        levels = torch.arange(self.n_reasoning, device=device) % self.n_codes
        return (FIRST_CODE + levels * self.codebook_size).expand(n, -1).clone()

    def _separates(self, steps: int) -> bool:
        """Whether a trace of ``steps`` tokens is closed by the separator (``trace_separator``; not in stage 1)."""
        return self.trace_separator and steps > 0 and self.stage != "pretrain"

    def _gates(self, steps: int) -> bool:
        """Whether the item's view of a trace of ``steps`` tokens goes through ``trace_gate``."""
        return self.trace_gate is not None and self._separates(steps)

    def gate_trace(self, state: DecoderState, steps: int) -> None:
        """Put the trace gate on a fresh cache whose sequences will hold a trace of ``steps`` tokens (no-op
        without one): queries from the separator on see the start token and the trace through it."""
        if self._gates(steps):
            state.close_view(self.trace_gate, steps + 1)

    def gate_mask(self, length: int, steps: int) -> Optional[Tensor]:
        """The policy decoder's self-attention mask ``[1, h, T, T]`` for a teacher-forced ``[start, trace of
        steps tokens, separator, item codes]`` of ``length`` inputs: causal, and the trace gate added where a
        query from the separator on reads the start token or the trace. ``None`` without a gate (T5's own mask)."""
        if not self._gates(steps):
            return None
        device = self.trace_gate.device
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        mask = torch.zeros(length, length, device=device).masked_fill(~causal, torch.finfo(torch.float).min)
        return mask + view_bias(self.trace_gate.float(), steps + 1, 0, length)

    def policy_hidden(self, labels: Tensor, steps: int, enc: Tensor, mask: Tensor) -> Tensor:
        """:meth:`decode_hidden` of the policy decoder for ``labels`` ``[separated(trace of steps tokens), …]``,
        through the trace gate when there is one."""
        return self.decode_hidden(self.t5.decoder, labels, enc, mask, self.gate_mask(labels.shape[1], steps))

    def separated(self, think: Tensor) -> Tensor:
        """``think`` ``[N, l]`` followed by the separator, ``[N, l + 1]`` (unchanged without one).

        The separator is PAD, the decoder's start token: the loss ignores it as a label, and as the next input it
        makes the item's codes follow ``[start]`` as in stage 1's direct decoder (module docstring).
        """
        if not self._separates(think.shape[1]):
            return think
        return torch.cat([think, self.start_tokens(think.shape[0], think.device)], dim=1)

    def _close_trace(self, cached: CachedT5Decoder, state: DecoderState, hidden: Tensor, steps: int) -> Tensor:
        """The decoder state that predicts the first item code after a trace of ``steps`` tokens: ``hidden``
        itself, or after feeding the separator."""
        if not self._separates(steps):
            return hidden
        return cached.step(self.start_tokens(hidden.shape[0], hidden.device), state)[:, -1]

    def neighbour_prefix(self, items: Tensor) -> Tensor:
        """Codes of the k most similar items, ``[B, k·m]`` (the stage-1 target prefix)."""
        near = self.neighbours[items, : self.pt_neighbours]  # [B, k]
        return self.target_tokens(near).flatten(1)

    # ---- stage 1: pretraining (eqs. 9–11) -----------------------------------------------------------
    def pretrain_loss(self, interaction) -> tuple[Tensor, Tensor]:
        enc, mask = self.encode(interaction)
        items = interaction[self.POS_ITEM_ID]
        direct = self.item_labels(items)  # [B, m+1]
        labels = torch.cat([self.neighbour_prefix(items), direct], dim=1)  # [B, k·m + m + 1]
        hidden = self.decode_hidden(self.t5.decoder, labels, enc, mask)
        lengthened = token_cross_entropy(self.logits(hidden), labels, temperature=self.pt_temperature)
        hidden_direct = self.decode_hidden(self.direct_decoder, direct, enc, mask)
        return lengthened, token_cross_entropy(self.logits(hidden_direct), direct)

    # ---- stage 2: annotation and SFT (eqs. 12–19) ----------------------------------------------------
    @torch.no_grad()
    def annotation_steps(self, interaction):
        """The iterative residual inference, one step at a time (batched, KV-cached).

        Yields, for i = 0..l, ``(t, Σ_{j≤i} d_j, Σ_{j≤i} E_{o_j}, s_i, o_{i+1})``: ``[B, d]`` each, then the next
        reasoning token ``[B, 1]`` (``None`` after s_l). :meth:`annotate` keeps the tokens and ‖t − s_i‖;
        ``bench/state_decomposition.py`` splits s_i into its parts.
        """
        enc, mask = self.encode(interaction)
        t = self.code_scale * self.target_repr(interaction[self.POS_ITEM_ID])  # [B, d]
        cached = CachedT5Decoder(self.t5.decoder)
        state = cached.start(enc, mask)
        d_sum = cached.step(self.start_tokens(enc.shape[0], enc.device), state)[:, -1]  # d_0
        code_sum = self.trace_origin(interaction, t)  # Σ_{j≤i} E_{o_j} (from b with trace_start: belief)
        for step in range(self.n_reasoning + 1):
            s = self.state(d_sum, code_sum)  # s_i
            if step == self.n_reasoning:
                yield t, d_sum, code_sum, s, None
                return
            token = self.nearest_code(self.mlp_r(t - s), step).unsqueeze(1)  # o_{i+1} = NN(MLP_r(t − s_i))
            yield t, d_sum, code_sum, s, token
            code_sum = code_sum + self.embeddings[token.squeeze(1)]
            d_sum = d_sum + cached.step(token, state)[:, -1]  # Σ_{j≤i+1} d_j

    @torch.no_grad()
    def annotate(self, interaction, return_distances: bool = False):
        """Iterative residual inference → pseudo-label reasoning tokens ``[B, l]`` (:meth:`annotation_steps`).

        With ``return_distances`` also ``‖t − s_i‖`` for i = 0..l, ``[B, l + 1]``. A collaborative trace
        is the target's second ID (its distances are NaN: there is no state to measure).
        """
        if self.reasoning_trace == "collaborative":
            tokens = self.trace_tokens[interaction[self.POS_ITEM_ID]]
            nan = torch.full((tokens.shape[0], self.n_reasoning + 1), float("nan"), device=tokens.device)
            return (tokens, nan) if return_distances else tokens
        out, dist = [], []
        for t, _, _, s, token in self.annotation_steps(interaction):
            dist.append((t - s).norm(dim=-1))
            if token is not None:
                out.append(token)
        tokens = torch.cat(out, dim=1) if out else torch.zeros(t.shape[0], 0, dtype=torch.long, device=t.device)
        return (tokens, torch.stack(dist, dim=1)) if return_distances else tokens

    @torch.no_grad()
    def init_reasoning_from_direct(self) -> None:
        """Stage-1 → stage-2 hand-over: the reasoning decoder takes the direct decoder's weights.

        Stage 1 trains the direct decoder on ``[codes(i); EOS]`` (TIGER's task); the reasoning decoder has
        only seen item codes after 2·m neighbour tokens. Starting SFT from the direct decoder keeps what
        stage 1 learnt about the item itself; T5's position bias is relative, so the item codes after the
        l reasoning tokens meet the same relative positions among themselves. With ``trace_separator`` and a
        closed ``trace_gate`` the item's codes see only ``[start, codes(i)]``, so the policy's item scores are
        the direct decoder's after any trace (module docstring).
        """
        self.t5.decoder.load_state_dict(self.direct_decoder.state_dict())

    def state_from_tiger(self, tiger_state: dict) -> dict:
        """This model's state dict with a trained TIGER's weights as stage 1 (``init_checkpoint`` of a TIGER run).

        TIGER's encoder, embeddings and decoder become the encoder, E and both decoders (the direct decoder is
        what stage 1 trains on TIGER's task, and the reasoning decoder takes it at the hand-over anyway); MLP_r
        and MLP_s keep their initialisation, and so do the collaborative trace's tokens (rows after TIGER's
        vocabulary). A key TIGER lacks, a TIGER key this model has no place for (e.g. ``recency_embedding`` on
        one side only), or a shape that differs, raises ``KeyError`` / ``ValueError`` naming it.
        """
        own = self.state_dict()
        state = dict(own)
        unused = sorted(set(tiger_state) - set(own))
        if unused:
            raise KeyError(unused[0])
        for key in own:
            source = "t5.decoder." + key[len("direct_decoder."):] if key.startswith("direct_decoder.") else key
            if source not in tiger_state:
                if key.startswith(("mlp_r.", "mlp_s.")) or key == "trace_gate":
                    continue
                raise KeyError(key)
            theirs = tiger_state[source]
            if theirs.shape != own[key].shape and self._is_grown_table(theirs, own[key]):
                theirs = torch.cat([theirs, own[key][theirs.shape[0]:]])  # the trace's new tokens keep their init
            if theirs.shape != own[key].shape:
                raise ValueError(key)
            state[key] = theirs
        return state

    def _is_grown_table(self, theirs: Tensor, own: Tensor) -> bool:
        """Whether ``theirs`` is this token table without the collaborative trace's extra rows."""
        extra = self.t5.config.vocab_size - vocab_size(self.n_codes, self.codebook_size)
        return extra > 0 and theirs.dim() == 2 and own.shape == (theirs.shape[0] + extra, theirs.shape[1])

    def item_logp(self, decoder, prefix: Tensor, items: Tensor, enc: Tensor, mask: Tensor) -> Tensor:
        """log π(codes(items) | x, prefix) ``[B]`` by teacher forcing (EOS not counted)."""
        steps = prefix.shape[1]
        prefix = self.separated(prefix)
        labels = torch.cat([prefix, self.item_labels(items)], dim=1)
        self_mask = self.gate_mask(labels.shape[1], steps) if decoder is self.t5.decoder else None
        hidden = self.decode_hidden(decoder, labels, enc, mask, self_mask)
        scored = torch.zeros_like(labels, dtype=torch.bool)
        scored[:, prefix.shape[1] : prefix.shape[1] + self.n_codes] = True
        return sequence_log_prob(self.logits(hidden).float(), labels, scored)

    @torch.no_grad()
    def reference_logp(self, interaction, *item_sets: Tensor,
                       encoded: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """log π_ref(codes(items) | x) ``[n_sets, B]`` from the frozen encoder + direct decoder (one encoding,
        ``encoded`` when the caller has it already)."""
        ref = self._reference
        if ref is None:
            raise RuntimeError("no π_ref: run stage 1 (pretrain) first or load its checkpoint")
        enc, mask = encoded if encoded is not None else ref.encode(interaction)
        n = len(item_sets)
        items = torch.cat(item_sets)  # [n·B]
        empty = items.new_zeros(items.shape[0], 0)
        logp = ref.item_logp(ref.direct_decoder, empty, items, enc.repeat(n, 1, 1), mask.repeat(n, 1))
        return logp.view(n, -1)

    def sft_loss(self, interaction) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(L_SFT, λ·L_DPO, μ·L_Quant, δ·L_State)`` on one annotated batch (one teacher-forced pass each)."""
        enc, mask = self.encode(interaction)
        items, think = interaction[self.POS_ITEM_ID], interaction[self.REASONING_FIELD]  # [B], [B, l]
        l = think.shape[1]
        labels = torch.cat([self.separated(think), self.item_labels(items)], dim=1)  # [B, l (+1) + m + 1]
        hidden = self.policy_hidden(labels, l, enc, mask)  # [B, l (+1) + m + 1, d]
        logits = self.logits(hidden)
        loss_sft = token_cross_entropy(logits, labels)
        has_trace = l > 0 and self.reasoning_trace != "collaborative"
        w = self.weights
        ref_encoded = None  # π_ref's encoding of the batch, made once for the belief and DPO
        if self._reference is not None and (w["dpo"] != 0 or (has_trace and self.trace_start == "belief")):
            with torch.no_grad():
                ref_encoded = self._reference.encode(interaction)

        if not has_trace:  # no trace, or none inferred: nothing to quantise or score
            zero = loss_sft.new_zeros(())
            loss_quant, loss_state = zero, zero
        else:
            t = self.code_scale * self.target_repr(items)  # [B, d]
            codes = self.embeddings[think]  # E_{o_1..o_l}, [B, l, d]
            origin = self.trace_origin(interaction, t, ref_encoded).unsqueeze(1)  # [B, 1, d]
            code_sum = origin + torch.cat([torch.zeros_like(codes[:, :1]), codes.cumsum(dim=1)], dim=1)  # [B, l + 1, d]
            states = self.state(hidden[:, : l + 1].cumsum(dim=1), code_sum)  # s_0..s_l, [B, l + 1, d]
            t_quant = t if self.quant_update_codebook else t.detach()
            quant_states = states if self.quant_update_state else states.detach()  # L_Quant's way into MLP_s and d_j
            residuals = self.mlp_r(t_quant.unsqueeze(1) - quant_states[:, :l])  # r_1..r_l, [B, l, d]
            loss_quant, loss_state = self._trace_losses(states, residuals, codes, t, l)

        if w["dpo"] == 0:  # no DPO: neither the rejected item's pass nor π_ref is needed
            loss_dpo = loss_sft.new_zeros(())
        else:
            negatives = self._draw_negatives(items)
            scored = torch.zeros_like(labels, dtype=torch.bool)
            first = labels.shape[1] - self.n_codes - 1  # the item's codes come last, before EOS
            scored[:, first : first + self.n_codes] = True
            chosen = sequence_log_prob(logits.float(), labels, scored)
            rejected = self.item_logp(self.t5.decoder, think, negatives, enc, mask)
            ref_chosen, ref_rejected = self.reference_logp(interaction, items, negatives, encoded=ref_encoded)
            loss_dpo = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=self.dpo_beta)
        return loss_sft, w["dpo"] * loss_dpo, w["quant"] * loss_quant, w["state"] * loss_state

    def _trace_losses(self, states: Tensor, residuals: Tensor, codes: Tensor, t: Tensor,
                      l: int) -> tuple[Tensor, Tensor]:  # noqa: E741
        """``(L_Quant, L_State)`` from s_0..s_l ``[B, l+1, d]``, r_1..r_l and E_{o_1..o_l} ``[B, l, d]``."""
        loss_quant = quantization_loss(residuals, codes, beta=self.quant_beta,
                                       update_codebook=self.quant_update_codebook)
        weights = default_step_weights(l, dtype=states.dtype, device=states.device)
        paper = self.state_similarity == "dot"  # the paper's raw dot product: t not detached (and τ = 1)
        loss_state = state_contrastive_loss(states[:, 1:], t if paper else t.detach(),
                                            temperature=self.state_temperature, weights=weights,
                                            similarity=self.state_similarity)
        return loss_quant, loss_state

    def _draw_negatives(self, items: Tensor) -> Tensor:
        """y⁻: one of the target's ``dpo_negative_pool`` most similar items, uniformly."""
        pool = min(self.dpo_negative_pool, self.neighbours.shape[1])
        pick = torch.randint(0, pool, items.shape, device=items.device)
        return self.neighbours[items].gather(1, pick.unsqueeze(1)).squeeze(1)

    def calculate_loss(self, interaction):
        if self.stage == "pretrain":
            return self.pretrain_loss(interaction)
        if self.stage == "sft":
            return self.sft_loss(interaction)
        raise RuntimeError("stage 'rl' is trained by STREAMRecTrainer's GRPO step, not calculate_loss")
