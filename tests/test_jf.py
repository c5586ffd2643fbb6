"""J and F on hand-made masks with answers worked out by hand, and seg2bmap against its definition."""
from __future__ import annotations

import numpy as np
import pytest

from vidssl.eval import jf


def square(shape, top, left, size):
    m = np.zeros(shape, bool)
    m[top:top + size, left:left + size] = True
    return m


def band(shape, first_col, last_col):
    """Full-height vertical band of foreground columns first_col..last_col (inclusive)."""
    m = np.zeros(shape, bool)
    m[:, first_col:last_col + 1] = True
    return m


def test_jaccard_of_overlapping_squares():
    gt = square((40, 40), 10, 10, 10)
    pred = square((40, 40), 15, 10, 10)  # 5 of 10 rows shared: 50 / (100 + 100 - 50)
    assert jf.jaccard(gt, pred) == pytest.approx(1 / 3)
    assert jf.jaccard(gt, gt) == 1.0
    assert jf.jaccard(gt, np.zeros_like(gt)) == 0.0
    assert jf.jaccard(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # absent and predicted absent


def naive_bmap(seg):
    """seg2bmap spelt out per pixel (BSDS/DAVIS definition)."""
    h, w = seg.shape
    out = np.zeros((h, w), bool)
    at = lambda y, x: bool(seg[y, x]) if y < h and x < w else False  # noqa: E731  (outside = background)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = at(y, x) != at(y, x + 1)
            elif x == w - 1:
                out[y, x] = at(y, x) != at(y + 1, x)
            else:
                out[y, x] = at(y, x) != at(y, x + 1) or at(y, x) != at(y + 1, x) or at(y, x) != at(y + 1, x + 1)
    return out


def test_seg2bmap_matches_the_definition():
    rng = np.random.default_rng(0)
    for shape in [(7, 9), (12, 5), (1, 6)]:
        seg = rng.random(shape) > 0.5
        np.testing.assert_array_equal(jf.seg2bmap(seg), naive_bmap(seg))
    # a 3x3 square at rows/cols 2..4 of 8x8: a one-pixel ring from (1, 1) to (4, 4), 12 pixels
    ring = jf.seg2bmap(square((8, 8), 2, 2, 3))
    want = np.zeros((8, 8), bool)
    want[1, 1:5] = want[4, 1:5] = want[1:5, 1] = want[1:5, 4] = True
    np.testing.assert_array_equal(ring, want)


def test_disk_and_tolerance():
    assert jf.disk(2).sum() == 13  # integer points with x^2 + y^2 <= 4
    assert jf.disk(2)[0, 0] == 0 and jf.disk(2)[0, 2] == 1
    assert jf.boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.7) = ceil(7.84)
    assert jf.boundary_tolerance((100, 100)) == 2  # ceil(0.008 * 141.4) = ceil(1.13)
    assert jf.boundary_tolerance((100, 100), bound_th=5) == 5  # >= 1: pixels


@pytest.mark.parametrize("shape,tol", [((100, 100), 2), ((480, 854), 8)])
def test_boundary_f_with_a_shifted_edge(shape, tol):
    """A band whose right edge moves by d pixels: its boundary is two full-height columns, the left one exact.
    Within the tolerance both match (F = 1); beyond it only the left one (P = R = 1/2, F = 1/2)."""
    gt = band(shape, 20, 79)
    for d in (1, tol, -tol):
        assert jf.boundary_f(gt, band(shape, 20, 79 + d)) == 1.0, d
    for d in (tol + 1, -(tol + 1), tol + 5):
        assert jf.boundary_f(gt, band(shape, 20, 79 + d)) == pytest.approx(0.5), d
    assert jf.jaccard(gt, band(shape, 20, 79 + tol + 1)) == pytest.approx(60 / (61 + tol))


def naive_boundary_f(gt, pred, tolerance):
    """The DAVIS F spelt out: a boundary pixel matches when one of the other mask's boundary pixels lies within
    Euclidean distance ``tolerance`` (a disk, not a square)."""
    gt_b, pred_b = np.argwhere(naive_bmap(gt)), np.argwhere(naive_bmap(pred))
    if len(gt_b) == 0 or len(pred_b) == 0:
        return float(len(gt_b) == len(pred_b))

    def matched(points, others):
        return sum(bool((((others - p) ** 2).sum(1) <= tolerance ** 2).any()) for p in points) / len(points)

    precision, recall = matched(pred_b, gt_b), matched(gt_b, pred_b)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_boundary_f_matches_the_definition_in_every_direction():
    """Diagonal shifts and blobs: a square tolerance zone would match pixels up to 8 x sqrt(2) away diagonally."""
    shape = (60, 60)
    gt = square(shape, 20, 20, 4)
    pred = square(shape, 27, 27, 4)  # every boundary pixel moved 7 px right and 7 down: 9.9 px, beyond 8
    expected = naive_boundary_f(gt, pred, 8)
    assert expected < 0.7  # within 8 only along the near sides
    assert jf.boundary_f(gt, pred, bound_th=8) == pytest.approx(expected)
    rng = np.random.default_rng(1)
    import cv2
    for trial in range(6):
        blobs = [cv2.GaussianBlur(rng.random(shape), (0, 0), 4) for _ in range(2)]
        a, b = (blob > np.median(blob) for blob in blobs)
        assert jf.boundary_f(a, b, bound_th=3) == pytest.approx(naive_boundary_f(a, b, 3)), trial


def test_boundary_f_precision_and_recall_differ():
    """Prediction = the ground-truth band plus a far-away extra band: every ground-truth boundary pixel is found
    (R = 1) but half of the predicted boundary is wrong (P = 1/2): F = 2 * 0.5 / 1.5 = 2/3."""
    gt = band((100, 100), 20, 39)
    pred = gt | band((100, 100), 70, 89)
    assert jf.boundary_f(gt, pred) == pytest.approx(2 / 3)
    assert jf.boundary_f(pred, gt) == pytest.approx(2 / 3)


def test_boundary_f_empty_cases():
    empty = np.zeros((30, 30), bool)
    obj = square((30, 30), 5, 5, 10)
    assert jf.boundary_f(empty, empty) == 1.0
    assert jf.boundary_f(obj, empty) == 0.0
    assert jf.boundary_f(empty, obj) == 0.0


def test_summarize_mean_recall_decay():
    s = jf.summarize([1.0] * 5 + [0.0] * 5)
    # quarter bounds for 10 frames: round(linspace(1, 10, 5)) - 1 = 0, 2, 5, 7, 9 -> first [0..2], last [7..9]
    assert s == {"mean": 0.5, "recall": 0.5, "decay": 1.0}
    s = jf.summarize([0.2, 0.6, 0.8, 0.4])
    assert s["mean"] == pytest.approx(0.5) and s["recall"] == 0.5
    # the official statistic counts frames strictly above 0.5: a J of exactly 1/2 (common on small masks) is a miss
    assert jf.summarize([0.5, 0.6])["recall"] == 0.5
    # 7 frames: linspace(1, 7, 5) = 1, 2.5, 4, 5.5, 7, rounded half up 1, 3, 4, 6, 7, minus 1: 0, 2, 3, 5, 6 ->
    # first [0..2] (0.9, 0.8, 0.7: 0.8), last [5..6] (0.4, 0.3: 0.35); naive quarters would give 0.6
    s = jf.summarize([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    assert s["decay"] == pytest.approx(0.45)


def test_sequence_scores_skip_first_and_last_frame_and_average_objects():
    shape = (40, 40)
    gt = [np.zeros(shape, np.uint8) for _ in range(5)]
    for m in gt:
        m[square(shape, 2, 2, 10)] = 1
        m[square(shape, 20, 20, 10)] = 2
    pred = [m.copy() for m in gt]
    pred[0][:] = 0  # first and last frames are not scored: garbage there changes nothing
    pred[-1][:] = 2
    for m in pred[1:-1]:
        m[m == 2] = 0
        m[square(shape, 25, 20, 10)] = 2  # object 2 shifted by 5 rows: J = 1/3
    out = jf.evaluate_sequence(gt, pred, object_ids=(1, 2))
    assert out["objects"]["1"]["J"]["mean"] == 1.0 and out["objects"]["1"]["F"]["mean"] == 1.0
    assert out["objects"]["2"]["J"]["mean"] == pytest.approx(1 / 3)
    assert len(out["objects"]["2"]["J_per_frame"]) == 3
    assert out["J_mean"] == pytest.approx((1 + 1 / 3) / 2)
    # dataset mean is over objects, not sequences: a one-object perfect sequence weighs 1/3
    perfect = jf.evaluate_sequence(gt, [m.copy() for m in gt], object_ids=(1,))
    both = jf.aggregate({"a": out, "b": perfect})
    assert both["J_mean"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert both["JF_mean"] == pytest.approx((both["J_mean"] + both["F_mean"]) / 2)
    assert both["J_recall"] == pytest.approx(2 / 3)  # object 2's J of 1/3 is under 0.5 in every frame
    assert both["J_decay"] == 0.0  # constant scores lose nothing over the sequence
    # decay averaged over objects: object 2 of a sequence whose J falls from 1 to 0 halfway
    falling = [m.copy() for m in gt]
    for m in falling[3:-1]:
        m[m == 2] = 0  # object 2 lost in frames 3 (of 1..3 scored): J 1, 1, 0
    late = jf.evaluate_sequence(gt, falling, object_ids=(1, 2))
    want = jf.summarize([1.0, 1.0, 0.0])["decay"]  # 3 frames: quarters [0..0] and [2..2] -> 1 - 0
    assert want == 1.0 and jf.aggregate({"late": late})["J_decay"] == pytest.approx((0.0 + want) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        jf.jaccard(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 3 frames"):
        jf.evaluate_sequence([np.zeros((4, 4))] * 2, [np.zeros((4, 4))] * 2, (1,))
