"""One tracker run and the pair windows along it.

A :class:`Track` follows a box with KCF for up to ``cfg.track_span`` frames. Every ``cfg.pair_stride`` frames a
*window* opens; ``cfg.track_length`` frames later it closes as a positive pair (the patch where it opened, the patch
where it closed) — exactly the paper's 30-frame track, so a window is what the statistics call a track. One
tracker thus yields a pair every ``pair_stride`` frames for one update every ``track_step`` frames, where a fresh
tracker per pair cost ``track_length`` updates per pair.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from tracking.boxes import Box, background_box, context_box
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


def check_tracker(cfg: MineConfig) -> None:
    """Refuse, before any video, an OpenCV without the tracker ``cfg.tracker``: KCF and CSRT live in the contrib
    modules, which the opencv-python build lacks, and installed beside opencv-contrib-python it shadows it. Found
    per video instead, every video was skipped as an ``error`` of AttributeError. One tracker is built on a blank
    frame, so the check is the code that tracks."""
    try:
        TRACKERS[cfg.tracker](np.zeros((64, 64, 3), np.uint8), (16, 16, 32, 32), cfg)
    except AttributeError as e:
        from vidssl.errors import VidsslError

        raise VidsslError(f"OpenCV {getattr(cv2, '__version__', '?')} (at {getattr(cv2, '__file__', '?')}): {e}; "
                          f"mine.tracker={cfg.tracker} needs OpenCV's contrib modules. Install opencv-contrib-python "
                          "alone: pip uninstall -y opencv-python opencv-contrib-python opencv-python-headless && "
                          "pip install opencv-contrib-python") from None


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


@dataclass
class _Step:
    """The track at one updated frame."""

    frame: int
    box: Box  # working px
    thumb: np.ndarray  # (THUMB, THUMB) grey, for the frozen check
    patch: np.ndarray | None  # (S, S, 3) RGB, cut only where a window opens or closes (or with store_tracks)
    window: Box | None = None  # where ``patch`` was cut from (working px): ``box`` widened by mine.patch_context

    def box_in_patch(self) -> list[float]:
        """The tracked box inside the stored patch, as fractions of its side: [x, y, w, h]."""
        wx, wy, side, _ = self.window
        x, y, w, h = self.box
        return [round((x - wx) / side, 4), round((y - wy) / side, 4), round(w / side, 4), round(h / side, 4)]


@dataclass
class Pair:
    """A closed window: the positive pair and where it came from. ``steps`` run from its first to its last frame,
    every ``cfg.track_step`` frames."""

    track_id: int
    region: int
    motion: float
    steps: list[_Step]
    background: "Background | None" = None

    @property
    def start(self) -> int:
        return self.steps[0].frame

    @property
    def end(self) -> int:
        return self.steps[-1].frame


@dataclass
class Background:
    """A same-frame background patch: the box beside the tracked one where a window opened (working px)."""

    box: Box
    patch: np.ndarray  # (S, S, 3) RGB


@dataclass
class Window:
    """An open pair window: the frame it opened on, the grid region of its first box (per-region cap) and, with
    ``mine.background_patches``, the background beside that box."""

    start: int
    region: int
    background: Background | None = None


@dataclass
class StepOutcome:
    """What one update gave: windows closed as pairs, windows dropped (by reason), and why the track ended."""

    pairs: list[Pair] = field(default_factory=list)
    lost: list[tuple[Window, str]] = field(default_factory=list)  # each dropped window and why
    ended: str | None = None  # None: the track goes on

    @property
    def dropped(self) -> Counter:
        """Dropped windows by reason."""
        return Counter(reason for _, reason in self.lost)


class Track:
    """A box followed from frame ``start`` by one tracker.

    The tracker runs on the *small* frame, the working frame scaled by ``scale`` so the box is about
    ``cfg.track_box_px`` wide (KCF's cost grows with box area), and only on every ``cfg.track_step``-th frame; the
    appearance thumbnails come from the small grey frame too. Boxes are kept in working pixels and patches are cut
    from the working frame. The miner opens windows (:meth:`open_window`) and feeds frames (:meth:`step`).
    """

    def __init__(self, track_id: int, start: int, box: Box, motion: float, scale: float,
                 small_bgr: np.ndarray, small_gray: np.ndarray, frame: np.ndarray, cfg: MineConfig):
        self.track_id, self.start, self.motion, self.scale, self.cfg = track_id, start, motion, scale, cfg
        small_box = tuple(v * scale for v in box)
        self.tracker = TRACKERS[cfg.tracker](small_bgr, tuple(int(round(v)) for v in small_box), cfg)
        thumb = crop(small_gray, small_box, THUMB)
        self.last_thumb = thumb
        # the steps a window still open can reach back to: track_length frames
        self.history: deque[_Step] = deque([_Step(start, box, thumb, None)],
                                           maxlen=cfg.track_length // cfg.track_step + 1)
        self.windows: deque[Window] = deque()
        self.frame = frame  # working frame of the newest step, for patches of windows opened there

    @property
    def box(self) -> Box:
        """The newest box (working px)."""
        return self.history[-1].box

    @property
    def last_frame(self) -> int:
        return self.history[-1].frame

    def wants(self, index: int) -> bool:
        """Whether frame ``index`` is one this track is updated on."""
        return (index - self.start) % self.cfg.track_step == 0

    def open_window(self, region: int) -> None:
        """Open a pair window at the newest step."""
        first = self.history[-1]
        self._patch(first, self.frame)
        background = None
        if self.cfg.background_patches:
            h, w = self.frame.shape[:2]
            box = background_box(first.box, w, h)
            background = Background(box, self._cut(self.frame, box))
        self.windows.append(Window(self.last_frame, region, background))

    def close(self, reason: str) -> StepOutcome:
        """End the track from outside (a cut, the video's end): every open window is lost for ``reason``."""
        outcome = StepOutcome(ended=reason)
        self._lose_all(outcome, reason)
        return outcome

    def step(self, index: int, small_bgr: np.ndarray, small_gray: np.ndarray, frame: np.ndarray) -> StepOutcome:
        """Follow the box into frame ``index`` (``small_*``: at tracker scale; ``frame``: RGB working frame).
        Windows reaching ``track_length`` close as pairs (or are dropped as frozen); a failed update ends the track
        and loses its open windows."""
        outcome = StepOutcome()
        ok, rect = self.tracker.update(small_bgr)
        failure = None if ok else "tracker_failure"
        if failure is None:
            x, y, bw, bh = rect
            h, w = small_gray.shape
            if x <= 0 or y <= 0 or x + bw >= w or y + bh >= h:
                # OpenCV clips a box that leaves the frame to the frame (KCF: x + w stays <= W, w shrinks), so
                # touching the border is the sign; past it, border padding would be part of the patch
                failure = "left_frame"
        if failure is None:
            thumb = crop(small_gray, rect, THUMB)
            if ncc(thumb, self.last_thumb) < self.cfg.min_patch_ncc:
                failure = "appearance"
        if failure is not None:
            outcome.ended = failure
            self._lose_all(outcome, failure)
            return outcome
        box = tuple(v / self.scale for v in rect)
        fh, fw = frame.shape[:2]
        # a guard that cannot trigger with the miner's shrink: scale is exactly 1/k and the small frame is the
        # working frame's first H // k rows and W // k columns, so a box that passed the border check (integer x + w
        # under W // k) ends by (W // k - 1) k < W here; an exhaustive check (integer boxes, frames up to 700 px wide,
        # every k up to 48) found no box it moves. Kept for a tracker frame made another way (a fractional scale),
        # where a box could end past the frame
        box = (min(box[0], fw - box[2]), min(box[1], fh - box[3]), box[2], box[3])
        self.last_thumb = thumb
        self.frame = frame
        current = _Step(index, box, thumb, None)
        self.history.append(current)
        if self.cfg.store_tracks:
            self._patch(current, frame)
        while self.windows and index - self.windows[0].start >= self.cfg.track_length:
            window = self.windows.popleft()
            self._patch(current, frame)
            steps = [s for s in self.history if s.frame >= window.start]
            if np.abs(thumb.astype(np.float32) - steps[0].thumb).mean() < self.cfg.frozen_mad:
                # the last patch repeats the first: a tracker stuck on still content, no pair to learn from
                outcome.lost.append((window, "frozen"))
                continue
            outcome.pairs.append(Pair(self.track_id, window.region, self.motion, steps, window.background))
        return outcome

    def _patch(self, step: _Step, frame: np.ndarray) -> None:
        if step.patch is None:
            step.window = self._window(frame, step.box)
            step.patch = crop(frame, step.window, self.cfg.patch_size)

    def _window(self, frame: np.ndarray, box: Box) -> Box:
        """Where the stored patch of ``box`` (working px) is cut from the working ``frame``: its mine.patch_context
        window."""
        h, w = frame.shape[:2]
        return context_box(box, self.cfg.patch_context, w, h)

    def _cut(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """The stored patch of ``box`` (working px) on the working ``frame``."""
        return crop(frame, self._window(frame, box), self.cfg.patch_size)

    def _lose_all(self, outcome: StepOutcome, reason: str) -> None:
        outcome.lost.extend((window, reason) for window in self.windows)
        self.windows.clear()
