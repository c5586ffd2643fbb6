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


def upsample_flow(flow: torch.Tensor, stride: int, size: tuple[int, int], offset: float) -> torch.Tensor:
    """[B, 2, h, w] flow in pixels on a stride-``stride`` grid -> [B, 2, H, W] (``size``) at full resolution.

    Cell (i, j)'s value belongs to pixel (stride j + offset, stride i + offset), the centre of what the backbone's
    cell saw (its ``cell_offset``: 0 for the conv backbones, 3.5 for 8x8 block means): pixels between centres are
    bilinear in the four around them, pixels beyond the outer centres take the nearest one's value. A vector put
    on the wrong pixel moves every flow edge by the difference (3.5 px each way for a conv backbone's cells placed
    on their blocks: under perfect matching, EPE 0.167 against 0.101 on Sintel alley_1)."""
    h, w = flow.shape[-2:]
    height, width = size

    def sample_positions(n_out: int, n_cells: int) -> torch.Tensor:
        # grid_sample's align_corners=True maps -1 and 1 to the first and last cell centres
        cells = (torch.arange(n_out, device=flow.device, dtype=flow.dtype) - offset) / stride
        return (2 * cells.clamp(0, n_cells - 1) / max(n_cells - 1, 1) - 1)

    ys, xs = sample_positions(height, h), sample_positions(width, w)
    grid = torch.stack(torch.broadcast_tensors(xs.view(1, -1), ys.view(-1, 1)), dim=-1)  # [H, W, (x, y)]
    grid = grid.unsqueeze(0).expand(flow.shape[0], -1, -1, -1)
    return F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)
