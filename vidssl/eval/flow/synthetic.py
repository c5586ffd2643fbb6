"""FlyingChairs-style synthetic pairs with exact ground truth, generated on the fly.

Each pair is a textured background plus textured shapes (superellipses: diamonds to ellipses to rounded boxes),
every layer under its own random affine motion (rotation, scale, translation about its centre). A layer is a
texture on canonical coordinates u in [-1, 1]^2 placed by an affine map M1 (u -> frame-1 pixels); its motion is an
affine map D of the image plane, so frame 2 shows it through M2 = D . M1. The frame-1 pixel x on top layer l then
moves exactly to D_l(x): the ground-truth flow is D_l(x) - x, with no interpolation error, and x is occluded when
another layer covers D_l(x) in frame 2 or D_l(x) leaves the frame. Coordinates are pixel centres (column, row).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_TEXTURE = 64  # texture side; layers are magnified onto the image, so textures stay smooth under bilinear sampling
_OCTAVES = ((4, 1.0), (8, 0.8), (16, 0.6), (32, 0.45))  # (noise grid side, weight): blobs down to a few pixels


@dataclass
class SyntheticBatch:
    """image1, image2: [B, 3, H, W] RGB in [0, 1]; flow: [B, 2, H, W] (u, v) in pixels; occluded: bool [B, H, W]."""

    image1: torch.Tensor
    image2: torch.Tensor
    flow: torch.Tensor
    occluded: torch.Tensor


def _uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _affine(centre: torch.Tensor, angle: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] maps p -> centre + R(angle) diag(sx, sy) p (p homogeneous)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(*angle.shape, 3, 3)
    m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = cos * sx, -sin * sy, centre[..., 0]
    m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = sin * sx, cos * sy, centre[..., 1]
    m[..., 2, 2] = 1.0
    return m


def _motion(centre: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] maps x -> centre + scale R(angle) (x - centre) + shift."""
    rot = _affine(torch.zeros_like(centre), angle, scale, scale)
    to_origin = torch.eye(3).expand_as(rot).clone()
    to_origin[..., :2, 2] = -centre
    back = torch.eye(3).expand_as(rot).clone()
    back[..., :2, 2] = centre + shift
    return back @ rot @ to_origin


def _textures(g: torch.Generator, n: int) -> torch.Tensor:
    """[n, 3, T, T] random colour textures in [0, 1]: multi-octave noise, squashed by tanh with a random gain so
    some textures are smooth and others blotchy with sharp edges (matching needs both)."""
    tex = torch.zeros(n, 3, _TEXTURE, _TEXTURE)
    for side, weight in _OCTAVES:
        noise = torch.randn(n, 3, side, side, generator=g)
        tex += weight * F.interpolate(noise, size=(_TEXTURE, _TEXTURE), mode="bicubic", align_corners=False)
    tex = tex / tex.flatten(1).std(dim=1).view(n, 1, 1, 1)
    gain = torch.exp(_uniform(g, (n, 1, 1, 1), math.log(0.5), math.log(4.0)))
    base = _uniform(g, (n, 3, 1, 1), 0.15, 0.85)
    contrast = _uniform(g, (n, 1, 1, 1), 0.1, 0.4)
    return (base + contrast * torch.tanh(gain * tex)).clamp(0.0, 1.0)


def _apply(affine: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """affine [B, L, 3, 3], points [B, P, 2] -> [B, L, P, 2]: every layer's map applied to every point."""
    homo = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # [B, P, 3]
    return torch.einsum("blij,bpj->blpi", affine[..., :2, :], homo)


def _coverage(u: torch.Tensor, power: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """u [B, L, P, 2] -> bool [B, L, P]: inside each layer's shape (layer 0, the background, covers everything)."""
    p = power[..., None]
    inside = (u[..., 0].abs() ** p + u[..., 1].abs() ** p) <= 1.0
    inside = inside & active[..., None]
    inside[:, 0] = True
    return inside


def _top_layer(inside: torch.Tensor) -> torch.Tensor:
    """bool [B, L, P] -> [B, P] index of the topmost covering layer (higher index = nearer)."""
    index = torch.arange(inside.shape[1]).view(1, -1, 1)
    return torch.where(inside, index, -1).max(dim=1).values


def _render(textures: torch.Tensor, u: torch.Tensor, top: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """textures [B, L, 3, T, T], u [B, L, P, 2], top [B, P] -> [B, 3, H, W]."""
    b, n_layers = u.shape[:2]
    # grid_sample's normalised coordinates with align_corners=False are exactly u in [-1, 1]; reflection keeps the
    # background textured wherever its motion uncovers the border
    colour = F.grid_sample(textures.flatten(0, 1), u.reshape(b * n_layers, height, width, 2), mode="bilinear",
                           padding_mode="reflection", align_corners=False).view(b, n_layers, 3, height * width)
    picked = torch.gather(colour, 1, top.view(b, 1, 1, -1).expand(b, 1, 3, -1)).squeeze(1)
    return picked.view(b, 3, height, width)


def synthetic_pairs(batch: int, height: int, width: int, generator: torch.Generator, max_motion: float = 24.0,
                    num_shapes: tuple[int, int] = (3, 8)) -> SyntheticBatch:
    """``batch`` random pairs of ``height`` x ``width`` (on the CPU; move them where needed).

    Shapes translate by up to ``max_motion`` px per axis (the background by half that), rotate by up to 10 degrees
    (background 2) and scale by up to 10% (background 3%); the number of shapes is uniform in ``num_shapes``.
    """
    g = generator
    lo, hi = num_shapes
    n_layers = 1 + hi
    active = torch.arange(n_layers).view(1, -1) <= torch.randint(lo, hi + 1, (batch, 1), generator=g)
    size = torch.tensor([width, height], dtype=torch.float32)
    short = min(height, width)

    centre = _uniform(g, (batch, n_layers, 2), 0.0, 1.0) * (size - 1)
    centre[:, 0] = (size - 1) / 2
    sx = _uniform(g, (batch, n_layers), 0.08, 0.3) * short
    sy = sx * _uniform(g, (batch, n_layers), 0.5, 1.5)
    sx[:, 0], sy[:, 0] = 0.6 * width, 0.6 * height  # background texture spans 1.2x the frame, reflected beyond
    angle = _uniform(g, (batch, n_layers), -math.pi, math.pi)
    angle[:, 0] = 0.0
    power = torch.exp(_uniform(g, (batch, n_layers), math.log(1.2), math.log(8.0)))
    place = _affine(centre, angle, sx, sy)

    is_bg = torch.zeros(batch, n_layers, dtype=torch.bool)
    is_bg[:, 0] = True
    limit = torch.where(is_bg, 0.5, 1.0)
    shift = _uniform(g, (batch, n_layers, 2), -1.0, 1.0) * (max_motion * limit)[..., None]
    turn = _uniform(g, (batch, n_layers), -1.0, 1.0) * torch.where(is_bg, math.radians(2), math.radians(10))
    scale = 1.0 + _uniform(g, (batch, n_layers), -1.0, 1.0) * torch.where(is_bg, 0.03, 0.1)
    move = _motion(centre, turn, scale, shift)

    textures = _textures(g, batch * n_layers).view(batch, n_layers, 3, _TEXTURE, _TEXTURE)
    inv1 = torch.linalg.inv(place)
    inv2 = torch.linalg.inv(move @ place)

    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).expand(batch, -1, -1)  # [B, P, 2]

    u1 = _apply(inv1, pixels)
    top1 = _top_layer(_coverage(u1, power, active))
    image1 = _render(textures, u1, top1, height, width)
    u2 = _apply(inv2, pixels)
    image2 = _render(textures, u2, _top_layer(_coverage(u2, power, active)), height, width)

    # flow of every layer at every pixel, then the one of the layer on top in frame 1
    moved = _apply(move, pixels)
    target = torch.gather(moved, 1, top1.view(batch, 1, -1, 1).expand(batch, 1, -1, 2)).squeeze(1)  # [B, P, 2]
    flow = (target - pixels).transpose(1, 2).reshape(batch, 2, height, width)

    top_at_target = _top_layer(_coverage(_apply(inv2, target), power, active))
    outside = (target < 0).any(-1) | (target > size - 1).any(-1)
    occluded = (top_at_target != top1) | outside
    return SyntheticBatch(image1, image2, flow, occluded.view(batch, height, width))
