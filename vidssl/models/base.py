"""The feature API every backbone implements (contract shared with the evaluation code)."""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with a pooled and a dense (stride-8) view of the same weights.

    Inputs are RGB in [0, 1] normalised by the caller with ``(x - mean) / std`` (per channel).
    The state dict holds only the backbone's own weights, named as in torchvision where torchvision has the
    architecture. A ResNet export loads into ``torchvision.models.resnet18()`` / ``resnet50()`` with exactly ``fc``
    missing; ``alexnet_wang2015`` keeps torchvision's names but the paper's fc7 (1024, not 4096; fc6 too at input
    sizes other than 227), so its ``features.*`` load into ``torchvision.models.alexnet().features`` and the whole
    file into ``vidssl.load_backbone``.
    """

    arch: str
    out_dim: int  # size of embed()'s output
    dense_dim: int  # channels of dense_features()'s output
    dense_stride: int = 8
    model_config_keys: tuple[str, ...] = ()  # keys of the `model` config section its constructor takes
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = int(input_size)  # the patch side it was built for (recorded in the model card)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, out_dim] pooled features."""
        raise NotImplementedError

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, dense_dim, ceil(H/8), ceil(W/8)]; any H, W >= 32."""
        raise NotImplementedError

    def embed_and_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> (embed(x), dense_features(x)); backbones whose two views share layers override it to
        run those once."""
        return self.embed(x), self.dense_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> the normalised input this backbone expects."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def spec(self) -> dict:
        """What a model card records to rebuild this backbone with ``build_backbone(**spec)``."""
        return {"arch": self.arch, "input_size": self.input_size}


def check_input(x: torch.Tensor, min_side: int = 32) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a [B, 3, H, W] batch, got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than {min_side} pixels on a side")
