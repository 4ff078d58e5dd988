"""TIGER (Rajput et al., 2023): one-step generative retrieval over semantic IDs (SPEC §4)."""

from __future__ import annotations

from torch import Tensor

from recbole_streamrec.model.generative import GenerativeRecommender
from recbole_streamrec.model.losses import token_cross_entropy


class TIGER(GenerativeRecommender):
    """T5 over the history's codes; the decoder target is ``[codes(target); EOS]`` with cross-entropy."""

    def calculate_loss(self, interaction) -> Tensor:
        enc, enc_mask = self.encode(interaction)
        labels = self.item_labels(interaction[self.POS_ITEM_ID])  # [B, m + 1]
        hidden = self.decode_hidden(self.t5.decoder, labels, enc, enc_mask)  # [B, m + 1, d]
        return token_cross_entropy(self.logits(hidden), labels)
