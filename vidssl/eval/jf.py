"""DAVIS region (J) and boundary (F) measures, as the DAVIS-2017 semi-supervised evaluation defines them.

- J: intersection over union of one object's predicted and ground-truth masks; 1 when both are empty.
- F: boundary F-measure. Boundaries are one-pixel maps after the BSDS ``seg2bmap`` definition (a pixel is on the
  boundary when it differs from its right, lower or lower-right neighbour); a predicted boundary pixel counts as
  correct when a ground-truth boundary pixel lies within a disk of radius ``ceil(0.008 * image diagonal)`` pixels
  (8 px at 854x480), and vice versa for recall. Empty-boundary cases follow the official code (both empty: P=R=1).
- Per object, per-frame values are summarised over every frame except the first (given) and the last, as the
  official evaluation does: mean, recall (fraction of frames > 0.5) and decay (mean of the first quarter of frames
  minus the last quarter).
- The dataset score averages over objects (not sequences): ``J_mean``, ``F_mean`` and ``JF_mean = (J_mean +
  F_mean) / 2``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOUND_TH = 0.008  # boundary tolerance as a fraction of the image diagonal (DAVIS standard)


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two (H, W) boolean masks; 1.0 when both are empty."""
    gt, pred = _check_pair(gt, pred)
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return np.count_nonzero(gt & pred) / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """(H, W) bool boundary map of a (H, W) mask: pixels whose right, lower or lower-right neighbour differs.

    Outside the image counts as background for the right/lower-right neighbours, except that the last row only
    compares with its right neighbour, the last column only with its lower neighbour and the bottom-right pixel is
    never a boundary (the BSDS definition the DAVIS code uses).
    """
    seg = np.asarray(seg).astype(bool)
    padded = np.zeros((seg.shape[0] + 1, seg.shape[1] + 1), dtype=bool)
    padded[:-1, :-1] = seg
    right, down, diag = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    bmap = (seg != right) | (seg != down) | (seg != diag)
    bmap[-1, :] = seg[-1, :] != right[-1, :]
    bmap[:, -1] = seg[:, -1] != down[:, -1]
    bmap[-1, -1] = False
    return bmap


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: the integer points with x^2 + y^2 <= r^2."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Tolerance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(*shape)))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of two (H, W) boolean masks with the DAVIS tolerance (see the module docstring)."""
    import cv2

    gt, pred = _check_pair(gt, pred)
    gt_b, pred_b = seg2bmap(gt), seg2bmap(pred)
    n_gt, n_pred = int(gt_b.sum()), int(pred_b.sum())
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:  # precision or recall is 0 and the other 1: F = 0
        return 0.0
    kernel = disk(boundary_tolerance(gt.shape, bound_th))
    gt_near = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    pred_near = cv2.dilate(pred_b.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_b & gt_near) / n_pred
    recall = np.count_nonzero(gt_b & pred_near) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def summarize(per_frame: Sequence[float]) -> dict:
    """``{"mean", "recall", "decay"}`` of per-frame values (decay: first-quarter mean minus last-quarter mean, with
    the quarter bounds of the official code: ``round(linspace(1, n, 5)) - 1``, bins sharing their end frames)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no frames to summarise")
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    first, last = values[edges[0]:edges[1] + 1], values[edges[3]:edges[4] + 1]
    return {"mean": float(values.mean()), "recall": float((values > 0.5).mean()),
            "decay": float(first.mean() - last.mean())}


def evaluate_sequence(gt: Sequence[np.ndarray], pred: Sequence[np.ndarray], object_ids: Sequence[int]) -> dict:
    """Per-object J and F of a propagated sequence.

    ``gt``, ``pred``: T label maps (H, W) (0 background, ids > 0 objects); ``object_ids``: the objects to score
    (those of the first frame). Frames 1..T-2 are scored. Returns
    ``{"objects": {"1": {"J": summary, "F": summary, "J_per_frame": [...], "F_per_frame": [...]}, ...},
    "J_mean", "F_mean", "JF_mean"}`` where the sequence means average its objects.
    """
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth masks but {len(pred)} predictions")
    if len(gt) < 3:
        raise ValueError("a sequence needs at least 3 frames: the first is given, the last is not scored")
    objects = {}
    for obj in object_ids:
        j = [jaccard(g == obj, p == obj) for g, p in zip(gt[1:-1], pred[1:-1])]
        f = [boundary_f(g == obj, p == obj) for g, p in zip(gt[1:-1], pred[1:-1])]
        objects[str(obj)] = {"J": summarize(j), "F": summarize(f), "J_per_frame": j, "F_per_frame": f}
    return {"objects": objects, **_means([o for o in objects.values()])}


def aggregate(sequences: dict[str, dict]) -> dict:
    """Dataset means over every object of every sequence (the official averaging): J_mean, F_mean, JF_mean, and
    J / F recall and decay."""
    return _means([o for seq in sequences.values() for o in seq["objects"].values()])


def _means(objects: list[dict]) -> dict:
    if not objects:
        raise ValueError("no objects to average")
    j = float(np.mean([o["J"]["mean"] for o in objects]))
    f = float(np.mean([o["F"]["mean"] for o in objects]))
    return {"J_mean": j, "F_mean": f, "JF_mean": (j + f) / 2,
            "J_recall": float(np.mean([o["J"]["recall"] for o in objects])),
            "F_recall": float(np.mean([o["F"]["recall"] for o in objects])),
            # the official table's third column: how much each score falls from the first to the last quarter
            "J_decay": float(np.mean([o["J"]["decay"] for o in objects])),
            "F_decay": float(np.mean([o["F"]["decay"] for o in objects]))}


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"masks must be 2-D and the same shape, got {gt.shape} and {pred.shape}")
    return gt, pred
