"""Flow metrics on hand-made flows with known answers, and against a per-pixel Python loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vidssl.eval.flow.metrics import flow_metrics, mean_metrics


def _const(h, w, u, v):
    return np.broadcast_to(np.array([u, v], np.float32), (h, w, 2)).copy()


def test_constant_3_4_offset_has_epe_5_and_no_pixel_within_5px():
    gt = _const(4, 6, 1.0, -2.0)
    m = flow_metrics(gt + np.array([3.0, 4.0], np.float32), gt)
    assert m["epe"] == pytest.approx(5.0)
    assert m["acc_1px"] == m["acc_3px"] == m["acc_5px"] == 0.0  # strict: EPE 5 is not < 5
    assert m["fl_all"] == 100.0  # 5 > 3 and 5 > 5% of |(1, -2)|
    assert m["epe_noc"] is None and m["epe_occ"] is None and m["valid_px"] == 24


def test_perfect_prediction():
    gt = np.random.default_rng(0).normal(0, 5, (5, 5, 2)).astype(np.float32)
    m = flow_metrics(gt.copy(), gt)
    assert m["epe"] == 0.0 and m["ae"] == pytest.approx(0.0, abs=1e-4) and m["fl_all"] == 0.0
    assert m["acc_1px"] == m["acc_3px"] == m["acc_5px"] == 100.0


@pytest.mark.parametrize("pred, gt, degrees", [
    ((1.0, 0.0), (0.0, 0.0), 45.0),  # (1,0,1) vs (0,0,1)
    ((0.0, 1.0), (1.0, 0.0), 60.0),  # cos = 1 / (sqrt2 sqrt2)
    ((-1.0, 0.0), (1.0, 0.0), 90.0),  # cos = 0
    ((2.0, 3.0), (2.0, 3.0), 0.0),
])
def test_angular_error_closed_forms(pred, gt, degrees):
    m = flow_metrics(_const(2, 3, *pred), _const(2, 3, *gt))
    assert m["ae"] == pytest.approx(degrees, abs=1e-3)


def test_fl_all_needs_both_3px_and_5_percent():
    gt = _const(1, 4, 100.0, 0.0)  # |gt| = 100: 5% is 5 px
    pred = gt.copy()
    pred[0, 0, 0] += 4.0  # > 3 px but < 5 px: not an outlier
    pred[0, 1, 0] += 6.0  # > 3 px and > 5 px: outlier
    pred[0, 2, 0] += 2.0  # < 3 px: not an outlier
    m = flow_metrics(pred, gt)
    assert m["fl_all"] == pytest.approx(25.0)
    small = _const(1, 2, 1.0, 0.0)  # |gt| = 1: any EPE > 3 px is an outlier
    m = flow_metrics(small + np.array([[[3.5, 0.0]], [[0.0, 0.0]]]).reshape(1, 2, 2).astype(np.float32), small)
    assert m["fl_all"] == pytest.approx(50.0)


def test_non_finite_predictions_are_outliers_not_inliers():
    gt = _const(1, 4, 10.0, 0.0)
    pred = gt.copy()
    pred[0, 0] = np.nan  # a diverged method
    pred[0, 1, 0] = np.inf
    m = flow_metrics(pred, gt)
    assert m["fl_all"] == pytest.approx(50.0) and m["acc_1px"] == pytest.approx(50.0)  # the two exact pixels pass
    assert m["nonfinite_px"] == 2 and math.isnan(m["epe"])  # written as null by the JSON writer


def test_valid_and_occlusion_masks_select_pixels():
    gt = np.zeros((2, 4, 2), np.float32)
    pred = gt.copy()
    pred[..., 0] = [[1, 2, 3, 100], [4, 5, 6, 100]]
    valid = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], bool)  # the 100 px column has no ground truth
    occluded = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], bool)
    m = flow_metrics(pred, gt, valid, occluded)
    assert m["epe"] == pytest.approx(21 / 6)
    assert m["epe_noc"] == pytest.approx(12 / 4)
    assert m["epe_occ"] == pytest.approx(9 / 2)
    assert m["acc_3px"] == pytest.approx(100 * 2 / 6)
    assert m["valid_px"] == 6
    no_occluded = flow_metrics(pred, gt, valid, np.zeros((2, 4), bool))
    assert no_occluded["epe_occ"] is None and no_occluded["epe_noc"] == pytest.approx(21 / 6)
    with pytest.raises(ValueError, match="no valid"):
        flow_metrics(pred, gt, np.zeros((2, 4), bool))


def test_against_a_per_pixel_loop():
    rng = np.random.default_rng(3)
    gt = rng.normal(0, 6, (7, 9, 2)).astype(np.float32)
    pred = (gt + rng.normal(0, 3, gt.shape)).astype(np.float32)
    valid = rng.random((7, 9)) > 0.2
    occluded = rng.random((7, 9)) > 0.7
    epe, ae, out, acc = [], [], [], {1: 0, 3: 0, 5: 0}
    noc, occ = [], []
    for y in range(7):
        for x in range(9):
            if not valid[y, x]:
                continue
            (u, v), (ug, vg) = pred[y, x].astype(float), gt[y, x].astype(float)
            e = math.hypot(u - ug, v - vg)
            epe.append(e)
            (occ if occluded[y, x] else noc).append(e)
            cos = (u * ug + v * vg + 1) / math.sqrt((u * u + v * v + 1) * (ug * ug + vg * vg + 1))
            ae.append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
            out.append(e > 3 and e > 0.05 * math.hypot(ug, vg))
            for px in acc:
                acc[px] += e < px
    m = flow_metrics(pred, gt, valid, occluded)
    n = len(epe)
    assert m["epe"] == pytest.approx(sum(epe) / n, rel=1e-6)
    assert m["epe_noc"] == pytest.approx(sum(noc) / len(noc), rel=1e-6)
    assert m["epe_occ"] == pytest.approx(sum(occ) / len(occ), rel=1e-6)
    assert m["ae"] == pytest.approx(sum(ae) / n, rel=1e-6)
    assert m["fl_all"] == pytest.approx(100 * sum(out) / n)
    for px, count in acc.items():
        assert m[f"acc_{px}px"] == pytest.approx(100 * count / n)


def test_metrics_over_pairs_are_pooled_over_pixels():
    """Sintel's and KITTI's convention: the mean over every scored pixel of all pairs, not the mean of pair means
    (the reviewer's case: 1 occluded pixel at EPE 100 in one pair, 999 at EPE 0 in the other -> 0.1, not 50)."""
    rng = np.random.default_rng(3)
    pairs, all_epe, all_noc_epe, all_occ_epe, all_out = [], [], [], [], []
    for h, w, occ_rows in ((4, 5, 1), (10, 8, 7)):
        gt = rng.normal(0, 4, (h, w, 2))
        pred = gt + rng.normal(0, 2, (h, w, 2))
        occluded = np.zeros((h, w), bool)
        occluded[:occ_rows] = True
        pairs.append(flow_metrics(pred, gt, None, occluded))
        for y in range(h):
            for x in range(w):
                e = float(np.hypot(*(pred[y, x] - gt[y, x])))
                all_epe.append(e)
                all_out.append(not (e <= 3.0 or e <= 0.05 * float(np.hypot(*gt[y, x]))))
                (all_occ_epe if occluded[y, x] else all_noc_epe).append(e)
    m = mean_metrics(pairs)
    assert m["epe"] == pytest.approx(sum(all_epe) / len(all_epe), rel=1e-9)
    assert m["epe_noc"] == pytest.approx(sum(all_noc_epe) / len(all_noc_epe), rel=1e-9)
    assert m["epe_occ"] == pytest.approx(sum(all_occ_epe) / len(all_occ_epe), rel=1e-9)
    assert m["fl_all"] == pytest.approx(100 * sum(all_out) / len(all_out), rel=1e-9)
    one = flow_metrics(np.full((1, 1000, 2), 0.0), np.zeros((1, 1000, 2)), None, np.arange(1000)[None] < 999)
    other = flow_metrics(np.full((1, 2, 2), 0.0), np.array([[[0.0, 0.0], [100.0, 0.0]]]), None,
                         np.array([[False, True]]))
    assert mean_metrics([one, other])["epe_occ"] == pytest.approx(0.1)
    # and its mirror for the non-occluded pixels: 1 at EPE 100 among 1000 valid, 2 at EPE 0 among 2 -> 100 / 3
    one = flow_metrics(np.zeros((1, 1000, 2)), np.concatenate([[[[100.0, 0.0]]], np.zeros((1, 999, 2))], 1), None,
                       np.arange(1000)[None] >= 1)
    other = flow_metrics(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), None, np.zeros((1, 2), bool))
    assert mean_metrics([one, other])["epe_noc"] == pytest.approx(100 / 3)


def test_metrics_over_pairs_skip_missing_values():
    a = flow_metrics(np.zeros((2, 2, 2)), np.ones((2, 2, 2)))  # no occlusion mask: epe_noc / epe_occ are None
    b = flow_metrics(np.zeros((2, 2, 2)), np.full((2, 2, 2), 3.0), None, np.array([[True, False], [False, False]]))
    m = mean_metrics([a, b])
    assert m["epe"] == pytest.approx((4 * 2 ** 0.5 + 4 * 18 ** 0.5) / 8)
    assert m["epe_noc"] == pytest.approx(18 ** 0.5) and m["epe_occ"] == pytest.approx(18 ** 0.5)
    assert mean_metrics([a])["epe_occ"] is None


def test_window_reach_closed_forms():
    """A matcher limited to +-R px per axis: the share of pixels it can reach, and the EPE of the clipped ground
    truth (the Sintel ambush_2 pair of $VIDSSL_DATA moves 56+ px everywhere, beyond the default +-32)."""
    from vidssl.eval.flow.metrics import window_reach

    gt = np.zeros((4, 6, 2))
    gt[:2] = (10.0, -5.0)  # in reach: nothing lost
    gt[2:] = (0.0, -50.0)  # 18 px beyond on v
    assert window_reach(gt, None, 32) == {"in_reach_pct": 50.0, "floor_epe": 9.0}
    valid = np.zeros((4, 6), bool)
    valid[3, :3] = True  # only out-of-reach pixels count
    assert window_reach(gt, valid, 32) == {"in_reach_pct": 0.0, "floor_epe": 18.0}
    diagonal = np.full((2, 2, 2), 40.0)  # both axes 8 px beyond: sqrt(8^2 + 8^2)
    assert window_reach(diagonal, None, 32)["floor_epe"] == pytest.approx(8 * 2 ** 0.5)
    assert window_reach(gt, None, 50)["in_reach_pct"] == 100.0  # the edge is in reach


def test_unknown_ground_truth_is_not_scored_by_default():
    """valid=None counted a Middlebury "unknown" pixel (> 1e9) as valid: one such pixel gave an EPE of 8.8e8."""
    from vidssl.eval.flow.metrics import window_reach

    gt = _const(3, 4, 3.0, 4.0)
    gt[0, 0] = (1e10, 1e10)  # unknown, as read_flo keeps it
    gt[1, 2] = (np.nan, 0.0)
    pred = np.zeros_like(gt)
    m = flow_metrics(pred, gt)
    # naive reference: the 10 known pixels, each 5 px from zero flow
    assert m["epe"] == pytest.approx(5.0) and m["valid_px"] == 10 and m["nonfinite_px"] == 0
    assert m["fl_all"] == 100.0 and m["acc_5px"] == 0.0
    assert flow_metrics(pred, gt, np.ones((3, 4), bool))["valid_px"] == 12  # a mask given is taken as given
    reach = window_reach(gt, None, 4)  # u = 3 in reach, v = 4 on the edge: all 10 known pixels
    assert reach == {"in_reach_pct": 100.0, "floor_epe": 0.0}
    with pytest.raises(ValueError, match="no valid ground-truth pixel"):
        flow_metrics(pred, np.full((3, 4, 2), 2e9, np.float32))
