"""The raw-pixel baseline every evaluation reports: its Lab conversion against OpenCV's and closed-form colours, and
its dense and pooled features against loops over the image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vidssl.eval.baselines import PixelFeatures, rgb_to_lab


def _scaled(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (L in [0, 100], a and b in about [-110, 110]) -> the baseline's scale: [..., 3]."""
    return np.stack([lab[..., 0] / 50 - 1, lab[..., 1] / 110, lab[..., 2] / 110], -1)


def test_lab_agrees_with_opencv_on_random_colours():
    rgb = np.random.default_rng(0).random((1, 40, 50, 3), dtype=np.float32)
    ours = rgb_to_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2))[0].permute(1, 2, 0).numpy()
    reference = _scaled(cv2.cvtColor(rgb[0], cv2.COLOR_RGB2Lab))  # float32 input: sRGB in [0, 1], D65
    assert np.abs(ours - reference).max() < 0.01  # OpenCV's float path uses a tabulated gamma


@pytest.mark.parametrize("rgb, lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),     # white: the reference white itself
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),       # black
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # sRGB red (published CIE Lab of #FF0000)
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),  # sRGB blue (#0000FF)
])
def test_lab_of_known_colours(rgb, lab):
    ours = rgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1)).flatten().numpy()
    assert ours == pytest.approx(_scaled(np.array(lab)), abs=2e-3)


def test_dense_and_pooled_pixel_features_against_loops():
    x = torch.rand(2, 3, 20, 36, generator=torch.Generator().manual_seed(1))
    lab = rgb_to_lab(x)
    dense = PixelFeatures().dense_features(x)
    assert dense.shape == (2, 3, 3, 5)  # ceil(20 / 8), ceil(36 / 8)
    for i in range(3):
        for j in range(5):  # a cell is the mean over its block, the last ones cut by the image's edge
            block = lab[:, :, 8 * i:8 * i + 8, 8 * j:8 * j + 8]
            assert torch.allclose(dense[:, :, i, j], block.mean((2, 3)), atol=1e-5)
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    pooled = PixelFeatures().embed(x).view(1, 3, 16, 16)
    lab = rgb_to_lab(x)
    for i in (0, 7, 15):
        for j in (0, 9, 15):  # 32 x 48 onto a 16 x 16 grid: blocks of 2 x 3 pixels
            assert torch.allclose(pooled[0, :, i, j], lab[0, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3].mean((1, 2)),
                                  atol=1e-5)
