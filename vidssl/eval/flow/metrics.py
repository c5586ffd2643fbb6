"""Optical-flow error metrics over the pixels with valid ground truth.

- ``epe``: mean end-point error ||pred - gt|| in pixels; ``epe_noc`` / ``epe_occ`` over the non-occluded / occluded
  valid pixels when an occlusion mask exists (Sintel "matched" / "unmatched").
- ``ae``: mean angular error in degrees between the space-time vectors (u, v, 1) (Barron et al. 1994, Middlebury).
- ``fl_all``: % of valid pixels whose EPE is > 3 px and > 5% of the ground-truth magnitude (KITTI 2015 outliers).
- ``acc_1px`` / ``acc_3px`` / ``acc_5px``: % of valid pixels with EPE < 1 / 3 / 5 px.

Over several pairs every metric is pooled over pixels (Sintel's and KITTI's benchmark convention), so a pair with
few occluded pixels does not weigh as much in ``epe_occ`` as one with many.
"""
from __future__ import annotations

import numpy as np

from vidssl.eval.flow.io import known_flow

ACCURACY_PX = (1, 3, 5)
METRIC_KEYS = ("epe", "epe_noc", "epe_occ", "ae", "fl_all", "acc_1px", "acc_3px", "acc_5px")
# the pixel count each metric is a mean over, for pooling over pairs
_PIXELS_OF = {"epe_noc": "noc_px", "epe_occ": "occ_px"}


def endpoint_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[H, W, 2], [H, W, 2] -> [H, W] per-pixel EPE."""
    return np.sqrt(((pred.astype(np.float64) - gt) ** 2).sum(axis=2))


def angular_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[H, W, 2], [H, W, 2] -> [H, W] angle in degrees between (u, v, 1) and (u_gt, v_gt, 1)."""
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    dot = (pred * gt).sum(axis=2) + 1.0
    norms = np.sqrt(((pred ** 2).sum(axis=2) + 1.0) * ((gt ** 2).sum(axis=2) + 1.0))
    with np.errstate(invalid="ignore"):  # a non-finite prediction has no angle: NaN, counted by flow_metrics
        return np.degrees(np.arccos(np.clip(dot / norms, -1.0, 1.0)))


def flow_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
                 occluded: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Metrics of one pair. pred, gt: [H, W, 2]; valid, occluded: bool [H, W] (valid defaults to the pixels whose
    ground truth is known, :func:`~vidssl.eval.flow.io.known_flow`: a Middlebury "unknown" value above 1e9 is no
    motion to score against).

    ``epe_noc`` / ``epe_occ`` are None without an occlusion mask, or when no valid pixel falls in that group.
    """
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"pred and gt must both be [H, W, 2], got {pred.shape} and {gt.shape}")
    valid = known_flow(gt) if valid is None else valid.astype(bool)
    if not valid.any():
        raise ValueError("no valid ground-truth pixel")
    epe_map = endpoint_error(pred, gt)
    epe = epe_map[valid]
    magnitude = np.sqrt((gt.astype(np.float64) ** 2).sum(axis=2))[valid]
    out: dict[str, float | int | None] = {"epe": float(epe.mean()), "epe_noc": None, "epe_occ": None,
                                          "noc_px": 0, "occ_px": 0}
    if occluded is not None:
        for key, group in (("epe_noc", valid & ~occluded), ("epe_occ", valid & occluded)):
            out[key] = float(epe_map[group].mean()) if group.any() else None
            out[_PIXELS_OF[key]] = int(group.sum())
    out["ae"] = float(angular_error(pred, gt)[valid].mean())
    # written as "not within tolerance", so a non-finite prediction (NaN EPE) is an outlier, never an inlier
    out["fl_all"] = float(100.0 * (~((epe <= 3.0) | (epe <= 0.05 * magnitude))).mean())
    for px in ACCURACY_PX:
        out[f"acc_{px}px"] = float(100.0 * (epe < px).mean())
    out["valid_px"] = int(valid.sum())
    out["nonfinite_px"] = int((~np.isfinite(epe)).sum())  # > 0 makes epe and ae NaN (written as null)
    return out


def window_reach(gt: np.ndarray, valid: np.ndarray | None, reach_px: float) -> dict[str, float]:
    """What a matcher whose displacements are limited to +-``reach_px`` per axis can get right on a pair: the % of
    valid pixels whose motion lies within that window, and the mean EPE of the ground truth clipped to it (no such
    matcher can score lower). gt: [H, W, 2]; valid: bool [H, W] (None: the pixels whose ground truth is known,
    :func:`~vidssl.eval.flow.io.known_flow`)."""
    gt = gt.astype(np.float64)
    valid = known_flow(gt) if valid is None else valid.astype(bool)
    inside = (np.abs(gt) <= reach_px).all(axis=2)[valid]
    floor = endpoint_error(np.clip(gt, -reach_px, reach_px), gt)[valid]
    return {"in_reach_pct": float(100.0 * inside.mean()), "floor_epe": float(floor.mean())}


def mean_metrics(per_pair: list[dict]) -> dict[str, float | None]:
    """Metrics of several pairs (each :func:`flow_metrics`' output), pooled over their pixels: each pair weighs by
    its count of the pixels the metric is a mean over; None where no pair has the value."""
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        pixels = _PIXELS_OF.get(key, "valid_px")
        scored = [(m[key], m[pixels]) for m in per_pair if m.get(key) is not None]
        out[key] = float(np.average([v for v, _ in scored], weights=[n for _, n in scored])) if scored else None
    return out
