"""Correlation volume against a naive loop; soft-argmax and feature matching on shifts with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.eval.flow.correlation import correlation, displacements, soft_argmax, upsample_flow
from vidssl.eval.flow.methods import FeatureMatchFlow


def naive_correlation(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    """The definition, one pixel and one displacement at a time (zero outside f2)."""
    b, c, h, w = f1.shape
    out = torch.zeros(b, (2 * d + 1) ** 2, h, w, dtype=torch.float64)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                k = 0
                for dy in range(-d, d + 1):
                    for dx in range(-d, d + 1):
                        if 0 <= y + dy < h and 0 <= x + dx < w:
                            out[n, k, y, x] = float((f1[n, :, y, x].double() * f2[n, :, y + dy, x + dx].double()).sum())
                        k += 1
    return out


@pytest.mark.parametrize("shape, d", [((2, 5, 6, 7), 2), ((1, 3, 4, 45), 3), ((1, 4, 9, 5), 4)])
def test_correlation_matches_the_naive_loop(shape, d):
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    out = correlation(f1, f2, d)
    assert out.shape == (shape[0], (2 * d + 1) ** 2, *shape[2:])
    assert torch.allclose(out.double(), naive_correlation(f1, f2, d), atol=1e-4)


def test_correlation_gradients_match_the_naive_definition():
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(1, 3, 5, 38, generator=g, dtype=torch.float64, requires_grad=True)  # 38 > one 32-column tile
    f2 = torch.randn(1, 3, 5, 38, generator=g, dtype=torch.float64, requires_grad=True)
    d = 2
    p = F.pad(f2, (d, d, d, d))  # an independent shifted-slice form of the definition, for autograd
    ref = torch.stack([(f1 * p[:, :, dy:dy + 5, dx:dx + 38]).sum(1) for dy in range(5) for dx in range(5)], 1)
    weights = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads_ref = torch.autograd.grad((ref * weights).sum(), (f1, f2))
    grads = torch.autograd.grad((correlation(f1, f2, d) * weights).sum(), (f1, f2))
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-10)


def test_correlation_memory_chunks_give_the_same_volume(monkeypatch):
    import vidssl.eval.flow.correlation as corr

    g = torch.Generator().manual_seed(2)
    f1, f2 = torch.randn(1, 9, 6, 8, generator=g), torch.randn(1, 9, 6, 8, generator=g)
    whole = correlation(f1, f2, 2)
    monkeypatch.setattr(corr, "_CHUNK_BYTES", 1)  # one channel at a time
    assert torch.allclose(correlation(f1, f2, 2), whole, atol=1e-5)


def test_displacement_order_is_rows_major():
    disp = displacements(1)
    assert disp.tolist() == [[-1, -1], [0, -1], [1, -1], [-1, 0], [0, 0], [1, 0], [-1, 1], [0, 1], [1, 1]]


def test_soft_argmax_recovers_an_integer_shift_of_random_features():
    g = torch.Generator().manual_seed(3)
    f1 = F.normalize(torch.randn(1, 64, 12, 14, generator=g), dim=1)
    f2 = torch.roll(f1, shifts=(2, -3), dims=(2, 3))  # content moves 2 cells down, 3 left
    flow = soft_argmax(correlation(f1, f2, 4), 4, temperature=0.02)
    interior = flow[0, :, 0:10, 3:14]  # cells whose match stays inside the map
    assert torch.allclose(interior[0], torch.full_like(interior[0], -3.0), atol=1e-3)
    assert torch.allclose(interior[1], torch.full_like(interior[1], 2.0), atol=1e-3)


@pytest.mark.parametrize("sx, sy", [(0.3, -1.6), (-1.45, 1.2), (0.0, 0.5)])
def test_soft_argmax_recovers_a_sub_cell_shift_in_closed_form(sx, sy):
    # scores -|k - s|^2 / (2 sigma^2) * T -> softmax weights are a Gaussian sampled on the integer grid, centred at
    # s; with sigma = 0.7 its grid mean is s up to exp(-2 pi^2 sigma^2) ~ 1e-4 (Poisson summation), and the +-4
    # window drops samples > 4.8 sigma away at |s| <= 1.6
    d, temperature, sigma = 4, 0.5, 0.7
    disp = displacements(d, dtype=torch.float64)
    cost = -((disp - torch.tensor([sx, sy], dtype=torch.float64)) ** 2).sum(1) / (2 * sigma ** 2) * temperature
    flow = soft_argmax(cost.view(1, -1, 1, 1), d, temperature)
    assert flow[0, :, 0, 0].tolist() == pytest.approx([sx, sy], abs=5e-4)


def test_upsampling_puts_each_cell_value_at_its_centre():
    cells = torch.arange(6, dtype=torch.float32).view(1, 1, 1, 6).expand(1, 2, 3, 6).contiguous()
    full = upsample_flow(cells, 8, (20, 45))
    assert full.shape == (1, 2, 20, 45)
    x = torch.arange(45, dtype=torch.float32)
    expected = ((x + 0.5) / 8 - 0.5).clamp(0, 5)  # linear between the centres 8i + 3.5, constant beyond
    assert torch.allclose(full[0, 0, 7], expected, atol=1e-5)


class SpaceToDepth(nn.Module):
    """Stand-in backbone: each 8x8 patch's raw pixels are its feature (exact matches under whole-cell shifts)."""

    arch, dense_stride, dense_dim = "space_to_depth", 8, 192
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def dense_features(self, x):  # [B, 3, H, W] -> [B, 192, ceil(H/8), ceil(W/8)], as the backbone contract says
        h, w = x.shape[-2:]
        return F.pixel_unshuffle(F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate"), 8)


def test_feature_matching_recovers_a_whole_cell_translation_at_full_resolution():
    rng = np.random.default_rng(4)
    image1 = rng.integers(0, 256, (84, 120, 3), dtype=np.uint8)  # 84 rows: not a multiple of 8
    image2 = np.roll(image1, shift=(8, -16), axis=(0, 1))  # pixel (x, y) -> (x - 16, y + 8)
    flow = FeatureMatchFlow(SpaceToDepth(), max_displacement=4, temperature=0.01)(image1, image2)
    assert flow.shape == (84, 120, 2) and flow.dtype == np.float32
    inner = flow[8:72, 24:96]  # away from the map edge, where the match leaves the padded volume
    assert np.allclose(inner[..., 0], -16.0, atol=1e-3)
    assert np.allclose(inner[..., 1], 8.0, atol=1e-3)
