"""FlowNet-style local correlation volume and soft-argmax to flow.

Displacement k of a volume with radius d is (dx, dy) = (k % (2d+1) - d, k // (2d+1) - d): rows (dy) major.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Bound on the unfolded [B, C_chunk, K, H, W] temporary; the volume is summed over channel chunks so memory stays
# flat for wide features (resnet50's 1024 channels at 1024x436 would otherwise need ~2.3 GB at radius 4).
_CHUNK_BYTES = 256 * 2 ** 20


def displacements(max_displacement: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[K, 2] (dx, dy) of each correlation channel, K = (2d+1)^2, in feature cells."""
    r = torch.arange(-max_displacement, max_displacement + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)


def correlation(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """[B, C, H, W] x2 -> [B, K, H, W] with out[b, k, y, x] = sum_c f1[b, c, y, x] * f2[b, c, y + dy_k, x + dx_k].

    f2 is zero outside the image. Vectorised over displacements (one unfold per channel chunk); differentiable.
    """
    if f1.shape != f2.shape or f1.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] maps of the same shape, got {tuple(f1.shape)}, {tuple(f2.shape)}")
    b, c, h, w = f1.shape
    side = 2 * max_displacement + 1
    k = side * side
    chunk = max(1, min(c, _CHUNK_BYTES // max(1, b * k * h * w * f1.element_size())))
    out = f1.new_zeros(b, k, h, w)
    for c0 in range(0, c, chunk):
        a, v = f1[:, c0:c0 + chunk], f2[:, c0:c0 + chunk]
        cc = a.shape[1]
        patches = F.unfold(v, kernel_size=side, padding=max_displacement).view(b, cc, k, h, w)
        out = out + (patches * a.unsqueeze(2)).sum(dim=1)
    return out


def soft_argmax(cost: torch.Tensor, max_displacement: int, temperature: float | torch.Tensor) -> torch.Tensor:
    """[B, K, H, W] matching scores -> [B, 2, H, W] expected (dx, dy) in cells under softmax(cost / temperature)."""
    prob = torch.softmax(cost / temperature, dim=1)
    disp = displacements(max_displacement, cost.device, cost.dtype)  # [K, 2]
    return torch.einsum("bkhw,kc->bchw", prob, disp)


def upsample_flow(flow: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """[B, 2, h, w] flow in pixels on a stride-``stride`` grid -> [B, 2, H, W] at full resolution.

    Cell (i, j) covers pixels [stride*i, stride*(i+1)): bilinear upsampling by ``stride`` with half-pixel centres
    puts every cell value at its centre; the map is then cropped to ``size`` (features are ceil(H / stride) tall).
    """
    h, w = flow.shape[-2:]
    full = F.interpolate(flow, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    return full[..., :size[0], :size[1]]
