"""One tracked region: the tracker, its boxes, its appearance checks and its patches."""
from __future__ import annotations

import cv2
import numpy as np

from tracking.boxes import Box
from tracking.config import MineConfig


def _kcf(frame: np.ndarray, box: tuple[int, int, int, int], cfg: MineConfig):
    """KCF reports failure (peak response under ``cfg.kcf_detect_thresh``). OpenCV's KCF does not detect on its
    first update, it only learns there, at the old position: the target's first step of motion becomes a permanent
    offset (a square moving 3 px per frame was reported exactly one frame late). Updating once on the initial
    frame primes it."""
    params = cv2.TrackerKCF_Params()
    params.detect_thresh = cfg.kcf_detect_thresh
    tracker = cv2.TrackerKCF_create(params)
    tracker.init(frame, box)
    tracker.update(frame)
    return tracker


def _csrt(frame: np.ndarray, box: tuple[int, int, int, int], cfg: MineConfig):
    """CSRT always reports success and drifts silently; here for comparison."""
    tracker = cv2.TrackerCSRT_create()
    tracker.init(frame, box)
    return tracker


TRACKERS = {"kcf": _kcf, "csrt": _csrt}

THUMB = 16  # side of the grey thumbnails compared by the appearance checks


def crop(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The ``box`` (x, y, w, h; inside the frame) of ``frame`` resized to ``size`` x ``size``."""
    x, y, w, h = (int(round(v)) for v in box)
    patch = frame[y:y + h, x:x + w]
    shrink = patch.shape[0] > size
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally sized grey patches; 0 when either is flat."""
    a = a.astype(np.float32).ravel() - a.mean()
    b = b.astype(np.float32).ravel() - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 1e-6 else 0.0


class Track:
    """A box followed from frame ``start`` for ``cfg.track_length`` frames.

    The tracker runs on the *small* frame, the working frame scaled by ``scale`` so the box is about
    ``cfg.track_box_px`` wide (KCF's cost grows with box area); the appearance thumbnails come from the small grey
    frame too. Boxes are kept in working pixels and patches are cut from the working frame.
    """

    def __init__(self, track_id: int, start: int, box: Box, motion: float, region: int, scale: float,
                 small_bgr: np.ndarray, small_gray: np.ndarray, frame: np.ndarray, cfg: MineConfig):
        self.track_id, self.start, self.motion, self.region, self.scale, self.cfg = (
            track_id, start, motion, region, scale, cfg)
        small_box = tuple(v * scale for v in box)
        self.tracker = TRACKERS[cfg.tracker](small_bgr, tuple(int(round(v)) for v in small_box), cfg)
        self.boxes: list[Box] = [box]
        self.first_thumb = self.last_thumb = crop(small_gray, small_box, THUMB)
        self.patches = [crop(frame, box, cfg.patch_size)]

    def step(self, small_bgr: np.ndarray, small_gray: np.ndarray, frame: np.ndarray) -> str | None:
        """Follow the box into the next frame (``small_*``: at tracker scale; ``frame``: RGB working frame).

        Returns None while the track goes on, "done" after its last frame, else why it was dropped.
        """
        ok, rect = self.tracker.update(small_bgr)
        if not ok:
            return "tracker_failure"
        x, y, bw, bh = rect
        h, w = small_gray.shape
        if x <= 0 or y <= 0 or x + bw >= w or y + bh >= h:
            # OpenCV clips a box that leaves the frame to the frame (KCF: x + w stays <= W, w shrinks), so touching
            # the border is the sign; past it, border padding would be part of the patch
            return "left_frame"
        box = tuple(v / self.scale for v in rect)
        fh, fw = frame.shape[:2]
        box = (min(box[0], fw - box[2]), min(box[1], fh - box[3]), box[2], box[3])  # rounding at the small scale
        thumb = crop(small_gray, rect, THUMB)
        if ncc(thumb, self.last_thumb) < self.cfg.min_patch_ncc:
            return "appearance"
        self.last_thumb = thumb
        self.boxes.append(box)
        last = len(self.boxes) == self.cfg.track_length + 1
        if self.cfg.store_tracks or last:
            self.patches.append(crop(frame, box, self.cfg.patch_size))
        if not last:
            return None
        if np.abs(thumb.astype(np.float32) - self.first_thumb).mean() < self.cfg.frozen_mad:
            return "frozen"  # the last patch repeats the first: a tracker stuck on still content, no pair to learn
        return "done"

    @property
    def end(self) -> int:
        return self.start + len(self.boxes) - 1
