"""Flow methods under one signature: ``method(image1, image2) -> flow`` with uint8 RGB [H, W, 3] frames and a
float32 [H, W, 2] flow in pixels.

Classical references come from :data:`CLASSICAL` by name; feature-based methods wrap a backbone
(:class:`FeatureMatchFlow`, zero-shot) or a trained correlation network (:class:`NetworkFlow`, see ``transfer.py``).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidssl.eval.flow.correlation import correlation, soft_argmax, upsample_flow
from vidssl.models.base import Backbone, normalize_rgb


class FlowMethod(Protocol):
    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> np.ndarray: ...


def zero_flow(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """The floor: no motion anywhere."""
    return np.zeros((*image1.shape[:2], 2), np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def farneback(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """Farneback polynomial expansion, 5 pyramid levels (reach for Sintel-size motion), OpenCV's sample settings."""
    return cv2.calcOpticalFlowFarneback(_grey(image1), _grey(image2), None, pyr_scale=0.5, levels=5, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def dis(preset: int, image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """Dense Inverse Search (Kroeger et al. 2016) with one of OpenCV's presets."""
    return cv2.DISOpticalFlow_create(preset).calc(_grey(image1), _grey(image2), None)


CLASSICAL: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "zero": zero_flow,
    "farneback": farneback,
    "dis_ultrafast": partial(dis, cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
    "dis_fast": partial(dis, cv2.DISOPTICAL_FLOW_PRESET_FAST),
    "dis_medium": partial(dis, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
}


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float() / 255.0


def to_numpy_flow(flow: torch.Tensor) -> np.ndarray:
    """[1, 2, H, W] -> float32 [H, W, 2]."""
    return flow[0].permute(1, 2, 0).detach().float().cpu().numpy()


def unit_features(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> [B, C, ceil(H/8), ceil(W/8)] dense features, L2-normalised per cell, so their
    correlation is a cosine similarity whatever the backbone's feature scale. The backbone's ``mean`` / ``std``
    normalisation is applied here (backbone contract: the caller does it)."""
    return F.normalize(backbone.dense_features(normalize_rgb(images, backbone.mean, backbone.std)), dim=1)


def match_flow(backbone: torch.nn.Module, image1: torch.Tensor, image2: torch.Tensor, max_displacement: int,
               temperature: float | torch.Tensor) -> torch.Tensor:
    """Zero-shot flow. [B, 3, H, W] x2 in [0, 1] -> [B, 2, H, W] in pixels: the soft-argmax of the cosine
    correlation of stride-s features over a (2d+1)^2 window, scaled by s and upsampled to full resolution."""
    stride = backbone.dense_stride
    f1, f2 = unit_features(backbone, image1), unit_features(backbone, image2)
    cells = soft_argmax(correlation(f1, f2, max_displacement), max_displacement, temperature)
    return upsample_flow(cells * stride, stride, image1.shape[-2:], cell_offset(backbone))


def cell_offset(model: torch.nn.Module) -> float:
    """Where ``model``'s dense cell (i, j) is centred: pixel (s i + offset, s j + offset); a model of your own that
    does not say (no ``cell_offset``) is taken as the conv backbones are, centred on (s i, s j)."""
    return float(getattr(model, "cell_offset", Backbone.cell_offset))


class FeatureMatchFlow:
    """Method 3: :func:`match_flow` with a frozen backbone, on numpy frames."""

    def __init__(self, backbone: torch.nn.Module, max_displacement: int, temperature: float,
                 device: torch.device | str = "cpu"):
        self.backbone = backbone.eval()
        self.max_displacement, self.temperature, self.device = max_displacement, temperature, device

    @torch.no_grad()
    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        flow = match_flow(self.backbone, to_tensor(image1, self.device), to_tensor(image2, self.device),
                          self.max_displacement, self.temperature)
        return to_numpy_flow(flow)


class NetworkFlow:
    """Any module mapping ([B, 3, H, W], [B, 3, H, W]) in [0, 1] to [B, 2, H, W] flow, on numpy frames."""

    def __init__(self, net: torch.nn.Module, device: torch.device | str = "cpu"):
        self.net, self.device = net.eval(), device

    @torch.no_grad()
    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
        return to_numpy_flow(self.net(to_tensor(image1, self.device), to_tensor(image2, self.device)))
