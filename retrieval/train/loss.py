"""The contrastive loss: symmetric InfoNCE with a learned temperature (CLIP)."""

from __future__ import annotations

import torch
from torch import nn


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (Radford et al. 2021, "Learning Transferable Visual Models From
    Natural Language Supervision"; van den Oord et al. 2018, "Representation Learning with
    Contrastive Predictive Coding").

    For a batch of N pairs with unit embeddings a_i, b_i and temperature t = 1 / logit_scale:

        L = -1/(2N) sum_i [ log softmax_j(a_i . b_j / t)_i + log softmax_j(b_i . a_j / t)_i ]

    It delegates to ``open_clip.loss.ClipLoss``, which computes exactly this on one process.
    The batches it is given must hold each caption once (the samplers guarantee it), since
    a repeated caption would be a positive counted as a negative.
    """

    def __init__(self) -> None:
        super().__init__()
        from open_clip.loss import ClipLoss

        self.clip_loss = ClipLoss()

    def forward(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        return self.clip_loss(a, b, logit_scale)
