"""Classical methods against zero flow on real Sintel ground truth; every method on grey frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidssl.eval.baselines import PixelFeatures
from vidssl.eval.flow.data import find_pairs, load_pair
from vidssl.eval.flow.methods import CLASSICAL, FeatureMatchFlow
from vidssl.eval.flow.metrics import flow_metrics


@pytest.fixture(scope="module")
def sintel(data_dir):
    return {p.name.split("/")[0]: load_pair(p) for p in find_pairs(data_dir / "flow")}


def test_classical_methods_beat_zero_flow_on_real_sintel(sintel):
    alley = sintel["sintel_clean_alley_1"]
    epe = {name: flow_metrics(method(alley.image1, alley.image2), alley.flow, alley.valid)["epe"]
           for name, method in CLASSICAL.items()}
    assert epe["zero"] == pytest.approx(2.98, abs=0.01)  # PROVENANCE.md: mean |flow| 2.98 px
    for name in ("farneback", "dis_ultrafast", "dis_fast", "dis_medium"):
        assert epe[name] < 0.5 * epe["zero"], (name, epe)
    assert epe["dis_medium"] < 1.0 and epe["dis_medium"] < epe["dis_ultrafast"]
    # ambush_2 moves ~89 px: DIS's coarse-to-fine search still halves the error of standing still
    ambush = sintel["sintel_final_ambush_2"]
    dis = flow_metrics(CLASSICAL["dis_medium"](ambush.image1, ambush.image2), ambush.flow, ambush.valid)["epe"]
    zero = flow_metrics(CLASSICAL["zero"](ambush.image1, ambush.image2), ambush.flow, ambush.valid)["epe"]
    assert dis < 0.6 * zero


def test_every_method_takes_grey_frames_and_returns_full_resolution_flow():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (45, 70), dtype=np.uint8)
    image1 = np.repeat(grey[:, :, None], 3, axis=2)  # read_image's form of a grey frame
    image2 = np.roll(image1, 2, axis=1)
    methods = {**CLASSICAL, "match": FeatureMatchFlow(PixelFeatures(), max_displacement=2, temperature=0.05)}
    for name, method in methods.items():
        flow = method(image1, image2)
        assert flow.shape == (45, 70, 2) and flow.dtype == np.float32, name
        assert np.isfinite(flow).all(), name
        if name not in ("zero", "match"):  # the classical methods find the 2 px roll (zeros passed before)
            inner = flow[8:-8, 8:-8]
            assert abs(np.median(inner[..., 0]) - 2) < 0.1 and abs(np.median(inner[..., 1])) < 0.1, name


def test_a_model_of_your_own_without_cell_offset_is_matched_as_a_conv_backbone():
    """Models that meet the feature contract (dense_features, dense_stride, mean, std) but say nothing of where their
    cells are centred crashed the flow evaluation (AttributeError) once placement read cell_offset."""
    from vidssl.eval.flow.methods import cell_offset
    from vidssl.models import build_backbone

    class Mine(torch.nn.Module):
        dense_stride, mean, std = 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

        def dense_features(self, x):
            return torch.nn.functional.avg_pool2d(x, 8, ceil_mode=True)

    assert cell_offset(Mine()) == 0.0 and cell_offset(PixelFeatures()) == 3.5
    assert cell_offset(build_backbone("smallcnn", width=4)) == 0.0
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    flow = FeatureMatchFlow(Mine(), max_displacement=2, temperature=0.05)(image, image)
    assert flow.shape == (40, 48, 2) and np.isfinite(flow).all()


class _CellBlocks(torch.nn.Module):
    """Each 8x8 block's 192 normalised pixel values as a cell's feature: distinct per cell, so matching is exact;
    ``gain`` multiplies each cell by a random positive factor (up to e^2), as a backbone wrapper might."""

    dense_stride, dense_dim, cell_offset = 8, 192, 3.5
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def __init__(self, gain: bool):
        super().__init__()
        self.gain = gain

    def dense_features(self, x):
        cells = torch.nn.functional.pixel_unshuffle(x, 8)
        if not self.gain:
            return cells
        g = torch.Generator().manual_seed(0)
        return cells * torch.exp(2 * torch.rand(cells.shape[0], 1, *cells.shape[2:], generator=g))


def test_matching_is_a_cosine_blind_to_each_cells_feature_scale():
    """Without the per-cell L2 normalisation the soft-argmax follows the largest dot product, i.e. the cell of
    frame 2 with the largest gain, not the best match (the mutation review's surviving 'no_l2norm')."""
    rng = np.random.default_rng(4)
    image1 = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    image2 = np.roll(image1, (8, -16), axis=(0, 1))  # one cell down, two cells left: flow (u, v) = (-16, 8)
    plain = FeatureMatchFlow(_CellBlocks(gain=False), max_displacement=3, temperature=0.02)(image1, image2)
    scaled = FeatureMatchFlow(_CellBlocks(gain=True), max_displacement=3, temperature=0.02)(image1, image2)
    # the cells whose match lies inside frame 2's map (not rolled in from the other side): the known shift exactly
    inner = scaled[8:-16, 24:-8].reshape(-1, 2)
    assert np.abs(inner - np.array([-16.0, 8.0])).max() < 1e-3
    np.testing.assert_allclose(scaled, plain, atol=1e-4)
