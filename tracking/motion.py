"""Motion after camera compensation, as Improved Dense Trajectories do.

Points are followed from frame ``t - 1`` to frame ``t``; a homography fitted with RANSAC explains the camera (the
background), and each point's residual displacement after the homography is its own motion. A point *moves* when
its residual exceeds ``move_threshold`` pixels per frame.

Four ways to get the point correspondences are implemented (``MineConfig.motion_method``); ``tools/bench_mining.py
--motion`` measures them against the demo clips' ground truth. All work on grey frames at the working resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Motion:
    """Camera-compensated motion of the points of one frame.

    ``points``: (N, 2) float32 x, y positions in frame t (working pixels); ``residual``: (N,) float32 pixels per
    frame left after the camera homography; ``moving``: (N,) bool, residual > threshold; ``homography``: (3, 3)
    float64, the camera's map from frame t - 1 to frame t (working pixels).
    """

    points: np.ndarray
    residual: np.ndarray
    moving: np.ndarray
    homography: np.ndarray

    def camera_shift(self, x: float, y: float) -> tuple[float, float]:
        """Where the camera moved the background at (x, y) of frame t - 1, as (dx, dy) working px."""
        u, v, w = self.homography @ np.array([x, y, 1.0])
        return float(u / w - x), float(v / w - y)

    @property
    def fraction(self) -> float:
        """Share of the frame's points that move (0 when there are none)."""
        return float(self.moving.mean()) if len(self.moving) else 0.0


class LKCorrespondences:
    """Points on a regular grid (textured ones only), followed into frame t by pyramidal Lucas-Kanade.

    The grid is what makes the camera fit work, as in Improved Dense Trajectories: corner detectors put most
    points on the most contrasted things, often the moving objects, and RANSAC then fits the homography to an object
    (on the demo still-camera clip, good-features-to-track left 81% of background points "moving"). A uniform grid
    makes the background hold most points. Grid points in flat areas, where LK is undetermined, are dropped; the bar
    is relative to the frame's strongest corner but low, so low-contrast background stays in. A forward-backward
    check (the round trip must land within 1 px) drops points LK lost, which would otherwise look like motion.
    """

    flat = 1e-4  # min eigenvalue below this fraction of the frame's maximum: a flat point

    def __init__(self, max_points: int):
        self.max_points = max_points
        self.lk = dict(winSize=(15, 15), maxLevel=2,
                       criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eig = cv2.cornerMinEigenVal(prev, 3)
        xs, ys = _grid(prev.shape, self.max_points)
        keep = eig[ys, xs] > self.flat * eig.max()
        p0 = np.stack([xs[keep], ys[keep]], 1).astype(np.float32).reshape(-1, 1, 2)
        if len(p0) == 0:
            return _empty(), _empty()
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **self.lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **self.lk)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < 1.0)
        return p0.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok]


class _DescriptorCorrespondences:
    """Keypoints detected in both frames, matched by descriptor with Lowe's ratio test."""

    norm = cv2.NORM_L2

    def __init__(self, detector):
        self.detector = detector
        self.matcher = cv2.BFMatcher(self.norm)

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k0, d0 = self.detector.detectAndCompute(prev, None)
        k1, d1 = self.detector.detectAndCompute(cur, None)
        if d0 is None or d1 is None or len(k0) < 2 or len(k1) < 2:
            return _empty(), _empty()
        pairs = [m for m in self.matcher.knnMatch(d0, d1, k=2) if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
        p0 = np.float32([k0[m[0].queryIdx].pt for m in pairs]).reshape(-1, 2)
        p1 = np.float32([k1[m[0].trainIdx].pt for m in pairs]).reshape(-1, 2)
        return p0, p1


class ORBCorrespondences(_DescriptorCorrespondences):
    norm = cv2.NORM_HAMMING

    def __init__(self, max_points: int):
        super().__init__(cv2.ORB_create(nfeatures=max_points))


class SIFTCorrespondences(_DescriptorCorrespondences):
    def __init__(self, max_points: int):
        super().__init__(cv2.SIFT_create(nfeatures=max_points))


class DISCorrespondences:
    """DIS dense optical flow (ultrafast preset), sampled on a regular grid of about ``max_points`` points."""

    def __init__(self, max_points: int):
        self.max_points = max_points
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flow = self.flow.calc(prev, cur, None)
        xs, ys = _grid(prev.shape, self.max_points)
        p0 = np.stack([xs, ys], 1).astype(np.float32)
        return p0, p0 + flow[ys, xs]


CORRESPONDENCES = {"lk": LKCorrespondences, "orb": ORBCorrespondences, "sift": SIFTCorrespondences,
                   "dis": DISCorrespondences}


def _grid(shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y (flat int arrays) of about ``n`` points on a regular grid over an image of ``shape`` (H, W)."""
    h, w = shape
    step = max(2, int(np.sqrt(h * w / n)))
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    return xs.ravel(), ys.ravel()


def _empty() -> np.ndarray:
    return np.zeros((0, 2), np.float32)


class MotionEstimator:
    """Camera-compensated motion between consecutive grey frames; one per video (holds detector state)."""

    def __init__(self, method: str, max_points: int, move_threshold: float, ransac_px: float, min_points: int):
        self.correspond = CORRESPONDENCES[method](max_points)
        self.move_threshold = move_threshold
        self.ransac_px = ransac_px
        self.min_points = min_points

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> Motion | None:
        """Motion of the points of ``cur`` (H, W uint8) relative to ``prev``; None when the camera can't be fitted
        (too few points, or RANSAC finds no homography), which rejects the frame."""
        p0, p1 = self.correspond(prev, cur)
        if len(p0) < self.min_points:
            return None
        # USAC_FAST: OpenCV's RANSAC with local optimisation; as good a background fit here as plain RANSAC,
        # which at a 0.5 px inlier distance ran out of iterations (3.7 ms a fit against 0.5 ms)
        homography, _ = cv2.findHomography(p0, p1, cv2.USAC_FAST, self.ransac_px)
        if homography is None:
            return None
        predicted = cv2.perspectiveTransform(p0.reshape(-1, 1, 2), homography).reshape(-1, 2)
        residual = np.linalg.norm(p1 - predicted, axis=1).astype(np.float32)
        return Motion(points=p1, residual=residual, moving=residual > self.move_threshold, homography=homography)
