"""Shared base of the generative recommenders: semantic IDs, the T5 backbone, and trie-constrained inference.

A user's history (RecBole's ``item_id_list``, the last ≤ ``MAX_ITEM_LIST_LENGTH`` items) becomes the codes
of those items, flattened, plus EOS (SPEC §3); with ``recency_embedding`` (not in the paper) each encoder token
also gets a learned embedding of its item's place counted back from the most recent one. Items are scored by
constrained beam search (SPEC §4): ``full_sort_predict`` returns ``[B, n_items]`` sequence log-probabilities, −inf
outside the beam; with ``popularity_penalty`` a > 0 each beam item's score is lowered by a·log(1 + its count as a
training target), a correction for the beam's bias toward popular items (off by default: the paper's scoring).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn
from transformers import T5Config, T5ForConditionalGeneration

from recbole_streamrec.data.semantic_ids import semantic_ids
from recbole_streamrec.model.beam_search import constrained_beam_search
from recbole_streamrec.model.t5_decoding import CachedT5Decoder, DecoderState
from recbole_streamrec.tokenizer.codes import EOS, PAD, PrefixTrie, codes_to_tokens, vocab_size


def build_t5(config, n_levels: int) -> T5ForConditionalGeneration:
    """The T5 of SPEC §3 (token embeddings shared by encoder, decoder and output layer)."""
    t5_config = T5Config(
        vocab_size=vocab_size(n_levels, config["codebook_size"]), d_model=config["d_model"],
        d_ff=config["d_ff"], d_kv=config["d_kv"], num_heads=config["num_heads"],
        num_layers=config["num_layers"], num_decoder_layers=config["num_decoder_layers"],
        dropout_rate=config["dropout_rate"], feed_forward_proj="relu", pad_token_id=PAD,
        eos_token_id=EOS, decoder_start_token_id=PAD, tie_word_embeddings=True,
    )
    return T5ForConditionalGeneration(t5_config)


class GenerativeRecommender(SequentialRecommender):
    """Items as semantic-ID tuples; a T5 reads the history's codes and generates the next item's codes."""

    input_type = InputType.POINTWISE
    uses_semantic_ids = True  # the config adds properties/generative.yaml

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        with torch.random.fork_rng():  # building the caches must not change this model's initialisation
            codes = torch.from_numpy(semantic_ids(config, dataset))  # [n_items, m]
        self.codebook_size = config["codebook_size"]
        self.n_codes = codes.shape[1]  # m
        self.beam_size = config["beam_size"]
        largest_k = max(config["topk"] or [0])
        if self.beam_size < largest_k:
            raise ValueError(f"beam_size ({self.beam_size}) must be >= the largest topk ({largest_k}): items outside "
                             "the beam score -inf, so a shorter beam cannot fill the top-k list")
        self.inference_amp = bool(config["inference_amp"])
        self.popularity_penalty = float(config["popularity_penalty"] or 0.0) if "popularity_penalty" in config else 0.0
        log_popularity = None
        if self.popularity_penalty:  # training-target counts of the split the model is built on (the training one)
            counts = torch.bincount(dataset.inter_feat[self.ITEM_ID].long(), minlength=self.n_items)[: self.n_items]
            log_popularity = torch.log1p(counts.float())  # [n_items]
        self.register_buffer("log_popularity", log_popularity, persistent=False)
        self.register_buffer("item_codes", codes)
        self.register_buffer("item_tokens", self._tokens_of(codes), persistent=False)
        self.trie = PrefixTrie(codes.numpy(), codebook_size=self.codebook_size)
        self.t5 = build_t5(config, self.n_codes + self.extra_token_levels(config))
        self.d_model = config["d_model"]
        self.recency_embedding = None
        if "recency_embedding" in config and config["recency_embedding"]:
            # zero at the start (built without drawing random numbers): the model starts as the one without it
            self.recency_embedding = nn.Embedding(self.max_seq_length + 1, self.d_model,
                                                  _weight=torch.zeros(self.max_seq_length + 1, self.d_model))
        self.full_padding = False  # True pads every history to MAX_ITEM_LIST_LENGTH (the old path; benchmarks, tests)

    def extra_token_levels(self, config) -> int:
        """Levels of K tokens the vocabulary holds after the items' m levels (none here; STREAM-Rec's
        collaborative trace has its own)."""
        return 0

    def _tokens_of(self, codes: Tensor) -> Tensor:
        tokens = codes_to_tokens(codes, codebook_size=self.codebook_size)
        tokens[0] = PAD  # the padding item has no codes
        return tokens

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        # the checkpoint's semantic IDs win: rebuild what is derived from them
        self.item_tokens = self._tokens_of(self.item_codes)
        self.trie = PrefixTrie(self.item_codes.cpu().numpy(), codebook_size=self.codebook_size).to(self.item_codes.device)
        return result

    # ---- encoder side -------------------------------------------------------------------------------
    def history_tokens(self, item_seq: Tensor, item_seq_len: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, L]`` left-aligned item ids → encoder ids ``[B, L'·m + 1]`` (codes then EOS) and mask.

        ``L'`` is the longest history in the batch, not ``MAX_ITEM_LIST_LENGTH``: T5's attention masks padded
        keys and its position bias is relative, so trailing padding changes nothing but the cost.
        """
        # histories are left-aligned: cut the batch to its longest one, so no work is spent on padding
        length = item_seq.shape[1]
        if not self.full_padding and item_seq_len.numel():
            length = max(int(item_seq_len.max()), 1)
        item_seq = item_seq[:, :length]  # [B, L'], L' = longest history in the batch
        batch = item_seq.shape[0]
        tokens = self.item_tokens[item_seq].reshape(batch, length * self.n_codes)  # [B, L'·m]
        ids = torch.cat([tokens, tokens.new_full((batch, 1), PAD)], dim=1)
        ids.scatter_(1, (item_seq_len * self.n_codes).unsqueeze(1), EOS)
        return ids, (ids != PAD).long()

    def recency(self, n_tokens: int, item_seq_len: Tensor) -> Tensor:
        """``[B, S]`` index of each encoder token's item counted from the most recent one: 1 for the last item's
        codes, ``len`` for the first's, 0 for EOS and padding (independent of the padding cut)."""
        item_index = torch.arange(n_tokens, device=item_seq_len.device) // self.n_codes  # [S]
        return (item_seq_len.unsqueeze(1) - item_index).clamp(min=0)  # [B, S]

    def encode(self, interaction) -> tuple[Tensor, Tensor]:
        """Encoder states ``[B, S, d]`` and mask ``[B, S]`` for a batch of histories."""
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        ids, mask = self.history_tokens(interaction[self.ITEM_SEQ], item_seq_len)
        if self.recency_embedding is None:
            return self.t5.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask
        # T5's position bias is relative and its cross-attention has no positions at all: tell every token how
        # far back its item is, so the decoder can find the latest items by content
        embeds = self.t5.encoder.embed_tokens(ids) + self.recency_embedding(self.recency(ids.shape[1], item_seq_len))
        return self.t5.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state, mask

    # ---- decoder side -------------------------------------------------------------------------------
    def logits(self, hidden: Tensor) -> Tensor:
        """Decoder states ``[..., d]`` → fp32 vocabulary logits ``[..., V]`` through the tied output layer.

        The output layer runs outside autocast, so every loss and score is computed from fp32 logits even when
        the T5 blocks run in bf16 (it is one ``d × V`` matrix: a small share of a step).
        """
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.float()
            if self.t5.config.scale_decoder_outputs:
                hidden = hidden * self.d_model**-0.5  # T5's rescaling for tied embeddings
            return F.linear(hidden, self.t5.lm_head.weight.float())

    def target_tokens(self, items: Tensor) -> Tensor:
        """``[...]`` item ids → ``[..., m]`` code tokens."""
        return self.item_tokens[items]

    @staticmethod
    def shift_right(labels: Tensor) -> Tensor:
        """Decoder inputs for teacher forcing: start token (PAD) then the labels but the last."""
        return torch.cat([labels.new_full((labels.shape[0], 1), PAD), labels[:, :-1]], dim=1)

    def decode_hidden(self, decoder, labels: Tensor, enc: Tensor, enc_mask: Tensor,
                      self_mask: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced decoder states ``[B, T, d]`` for ``labels`` ``[B, T]`` (position t predicts labels[t]).

        ``self_mask``: an additive self-attention mask ``[1, h, T, T]`` that replaces the causal one (it must
        be causal itself).
        """
        return decoder(input_ids=self.shift_right(labels), encoder_hidden_states=enc, encoder_attention_mask=enc_mask,
                       attention_mask=self_mask).last_hidden_state

    def item_labels(self, items: Tensor) -> Tensor:
        """``[B]`` item ids → ``[B, m + 1]`` labels: codes then EOS."""
        tokens = self.target_tokens(items)
        return torch.cat([tokens, tokens.new_full((tokens.shape[0], 1), EOS)], dim=1)

    # ---- inference ----------------------------------------------------------------------------------
    def _amp(self):
        if not self.inference_amp:
            return nullcontext()
        return torch.autocast(device_type=self.item_codes.device.type, dtype=torch.bfloat16)

    def step_fn(self, cached: CachedT5Decoder):
        """Next-token log-probabilities ``[N, V]`` from the cached decoder, for the beam search."""

        def step(tokens: Tensor, state: DecoderState) -> Tensor:
            return F.log_softmax(self.logits(cached.step(tokens, state)[:, -1]).float(), dim=-1)

        return step

    @staticmethod
    def start_tokens(n: int, device: torch.device) -> Tensor:
        """``[n, 1]`` decoder start tokens (T5 starts decoding from PAD)."""
        return torch.full((n, 1), PAD, dtype=torch.long, device=device)

    def decode_prefix(self, cached: CachedT5Decoder, state: DecoderState, batch: int) -> Tensor:
        """Run the decoder up to the first item code; returns its log-probabilities ``[B, V]``.

        TIGER has no prefix: one step on the start token. STREAM-Rec overrides this to think first.
        """
        return self.step_fn(cached)(self.start_tokens(batch, self.item_codes.device), state)

    @torch.no_grad()
    def generate_items(self, interaction, beam_size: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Top items ``[B, beam]`` and their sequence log-probabilities ``[B, beam]``, best first."""
        with self._amp():
            enc, enc_mask = self.encode(interaction)
            cached = CachedT5Decoder(self.inference_decoder())
            state = cached.start(enc, enc_mask)
            first = self.decode_prefix(cached, state, enc.shape[0])
            return constrained_beam_search(self.step_fn(cached), first, state, self.trie,
                                           beam_size=beam_size or self.beam_size)

    def inference_decoder(self):
        """The T5 decoder stack that generates items at inference."""
        return self.t5.decoder

    def full_sort_predict(self, interaction) -> Tensor:
        items, scores = self.generate_items(interaction)
        if self.popularity_penalty:
            scores = scores - self.popularity_penalty * self.log_popularity[items]  # −inf (dead beams) stays −inf
        out = torch.full((items.shape[0], self.n_items), float("-inf"), device=items.device)
        return out.scatter_(1, items, scores)  # dead beams write −inf into column 0 (padding)

    def predict(self, interaction) -> Tensor:
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
