"""The training model: a backbone, a head to ``embed_dim`` and L2 normalisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.models.base import Backbone


def _linear(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Linear(in_dim, out_dim)


def _mlp(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
                         nn.Linear(in_dim, out_dim))


def _identity(in_dim: int, out_dim: int) -> nn.Module:
    if in_dim != out_dim:
        raise ValueError(f"head 'identity' needs embed_dim == the backbone's out_dim ({in_dim}), got {out_dim}")
    return nn.Identity()


HEADS = {"linear": _linear, "mlp": _mlp, "identity": _identity}


class EmbeddingNet(nn.Module):
    """Shared-weight Siamese-triplet tower: anchors, positives and negatives go through one forward pass
    (concatenated by the caller), so weights are shared by construction and BatchNorm sees all of them."""

    def __init__(self, backbone: Backbone, embed_dim: int, head: str = "linear") -> None:
        super().__init__()
        self.backbone = backbone
        if head not in HEADS:
            raise ValueError(f"head {head!r} is not one of {list(HEADS)}")
        self.head = HEADS[head](backbone.out_dim, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor, dense: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, S, S] normalised patches -> [N, embed_dim] float32 unit vectors; with ``dense`` also the backbone's
        [N, dense_dim, ceil(S/8), ceil(S/8)] dense features (for the cycle loss), from the same pass where layers
        are shared."""
        if not dense:
            return F.normalize(self.head(self.backbone.embed(x)).float(), dim=1)
        pooled, maps = self.backbone.embed_and_dense(x)
        return F.normalize(self.head(pooled).float(), dim=1), maps
