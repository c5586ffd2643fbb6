"""FlowNet-style local correlation volume and soft-argmax to flow.

Displacement k of a volume with radius d is (dx, dy) = (k % (2d+1) - d, k // (2d+1) - d): rows (dy) major.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Bound on the [B, H, n, C_chunk, s (T + 2d)] copy of f2's blocks; the volume is summed over channel chunks so memory
# stays flat for wide features (resnet50's 1024 channels at 1024x436 would otherwise take ~0.4 GB).
_CHUNK_BYTES = 128 * 2 ** 20
# columns per tile: a tile's GEMM computes T + 2d candidate columns per row and keeps 2d + 1 of them, so a larger T
# wastes more products in fewer, larger GEMMs (16, 32 and 64 measured within 10% of each other on CPU)
_TILE = 32


def displacements(max_displacement: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[K, 2] (dx, dy) of each correlation channel, K = (2d+1)^2, in feature cells."""
    r = torch.arange(-max_displacement, max_displacement + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)


def correlation(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """[B, C, H, W] x2 -> [B, K, H, W] with out[b, k, y, x] = sum_c f1[b, c, y, x] * f2[b, c, y + dy_k, x + dx_k].

    f2 is zero outside the map; differentiable. Vectorised over displacements as batched matrix products: each row
    of f1, cut into tiles of T columns, is multiplied with the block of f2 it can reach (2d+1 rows by T + 2d
    columns) in one GEMM, and the (2d+1) x (2d+1) band of each product is kept. On CPU that beats both an unfold
    (im2col) of f2 and a loop over the displacements (tools/_bench_flow.py).
    """
    if f1.shape != f2.shape or f1.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] maps of the same shape, got {tuple(f1.shape)}, {tuple(f2.shape)}")
    b, c, h, w = f1.shape
    d = max_displacement
    side, tile = 2 * d + 1, min(_TILE, w)
    reach = tile + 2 * d
    n = math.ceil(w / tile)
    wp = n * tile
    f1 = F.pad(f1, (0, wp - w))
    f2 = F.pad(f2, (d, d + wp - w, d, d))
    # column t of a tile matches columns t .. t + 2d of its block: dx = j - t - d
    band = (torch.arange(tile, device=f1.device)[:, None] + torch.arange(side, device=f1.device)).view(tile, 1, side)
    band = band.expand(b, h, n, tile, side, side)
    per_channel = b * h * n * side * reach * f1.element_size()
    chunk = max(1, min(c, _CHUNK_BYTES // per_channel))
    out = f1.new_zeros(b, h, n, tile, side, side)
    for c0 in range(0, c, chunk):
        rows = f1[:, c0:c0 + chunk].unflatten(3, (n, tile)).permute(0, 2, 3, 4, 1)  # [B, H, n, T, Cc]
        cc = rows.shape[-1]
        block = f2[:, c0:c0 + chunk].unfold(2, side, 1).unfold(3, reach, tile)  # [B, Cc, H, n, s, T+2d]
        block = block.permute(0, 2, 3, 1, 4, 5).reshape(b, h, n, cc, side * reach)
        products = torch.matmul(rows, block).view(b, h, n, tile, side, reach)  # [B, H, n, T, dy, j]
        out = out + products.gather(-1, band)
    # [B, H, n, T, dy, dx] -> [B, dy, dx, H, n, T] -> [B, K, H, W]
    return out.permute(0, 4, 5, 1, 2, 3).reshape(b, side * side, h, wp)[..., :w]


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
