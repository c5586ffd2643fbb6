"""Classical methods against zero flow on real Sintel ground truth; every method on grey frames."""
from __future__ import annotations

import numpy as np
import pytest

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
