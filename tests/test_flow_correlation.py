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


def naive_upsample(cells: np.ndarray, stride: int, size: tuple[int, int], offset: float) -> np.ndarray:
    """The definition, one pixel at a time: cell (i, j) sits at pixel (stride j + offset, stride i + offset);
    a pixel between centres is bilinear in the four around it, one beyond the outer centres takes the nearest."""
    h, w = cells.shape
    out = np.zeros(size)
    for y in range(size[0]):
        for x in range(size[1]):
            cy, cx = min(max((y - offset) / stride, 0), h - 1), min(max((x - offset) / stride, 0), w - 1)
            y0, x0 = int(np.floor(cy)), int(np.floor(cx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = cy - y0, cx - x0
            out[y, x] = ((1 - fy) * ((1 - fx) * cells[y0, x0] + fx * cells[y0, x1])
                         + fy * ((1 - fx) * cells[y1, x0] + fx * cells[y1, x1]))
    return out


@pytest.mark.parametrize("offset", [0.0, 3.5])
@pytest.mark.parametrize("shape, size", [((3, 6), (20, 45)), ((1, 4), (5, 30)), ((2, 1), (16, 8))])
def test_upsampling_puts_each_cell_value_at_its_centre(offset, shape, size):
    cells = torch.from_numpy(np.random.default_rng(0).normal(size=(2, *shape))).float().unsqueeze(0)
    full = upsample_flow(cells, 8, size, offset)
    assert full.shape == (1, 2, *size)
    for channel in range(2):
        want = naive_upsample(cells[0, channel].double().numpy(), 8, size, offset)
        assert np.allclose(full[0, channel].numpy(), want, atol=1e-5)


class SpaceToDepth(nn.Module):
    """Stand-in backbone: each 8x8 patch's raw pixels are its feature (exact matches under whole-cell shifts)."""

    arch, dense_stride, dense_dim, cell_offset = "space_to_depth", 8, 192, 3.5
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


class CentredWindows(SpaceToDepth):
    """Stand-in backbone under the conv backbones' contract: cell (i, j) is the 8x8 window centred on pixel
    (8i, 8j), rows and columns [8i - 4, 8i + 4)."""

    cell_offset = 0.0

    def dense_features(self, x):
        h, w = x.shape[-2:]
        padded = F.pad(x, (4, 4, 4, 4), mode="replicate")  # index 0 is pixel -4
        return F.pixel_unshuffle(padded[..., :8 * -(-h // 8), :8 * -(-w // 8)], 8)


def test_matched_flow_lands_where_the_cells_saw_its_edge():
    """Rows above 44 move 8 px right, rows below stay: every window centred on 8i is on one side, so the cells match
    exactly (8 px at centres up to row 40, 0 from row 48) and the flow between is the line joining them. Placed on
    the cells' 8x8 blocks (8i + 3.5, as before), the edge landed 3.5 px low: row 47 read 4.5 px for 1."""
    rng = np.random.default_rng(5)
    image1 = rng.integers(0, 256, (88, 128, 3), dtype=np.uint8)
    image2 = image1.copy()
    image2[:44] = np.roll(image1[:44], shift=8, axis=1)  # top: pixel (x, y) -> (x + 8, y)
    flow = FeatureMatchFlow(CentredWindows(), max_displacement=2, temperature=0.01)(image1, image2)
    inner = flow[:, 24:104]  # away from the columns the roll wrapped round
    expected = np.clip(48 - np.arange(88), 0, 8).astype(np.float32)  # 8 to row 40, linear to 0 at row 48
    assert np.allclose(inner[..., 0], expected[:, None], atol=1e-3)
    assert np.allclose(inner[..., 1], 0.0, atol=1e-3)
