"""Mine one video: a single streaming pass that detects cuts, starts tracks where things move, and keeps the
tracks that survive every check as (first patch, last patch) pairs.

Per frame the cost is one resize to the small tracking frame, its grey conversion and a 32x24 thumbnail (cut
detection), plus one tracker update per running track; camera-compensated motion is computed only at candidate
start frames. Nothing but the running tracks and the previous frame is held, so memory does not grow with the
video's length.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from tracking.boxes import select_boxes
from tracking.config import MineConfig
from tracking.cuts import CutDetector
from tracking.motion import MotionEstimator
from tracking.track import Track
from vidssl.video import VideoReader, resized_shape

MIN_CAMERA_POINTS = 20  # fewer correspondences than this: the homography is not trusted and the frame is rejected


class SkipVideo(Exception):
    """A video that yields nothing usable; ``reason`` is a key of the summary's ``skipped`` table."""

    def __init__(self, reason: str, detail: str, result: "VideoResult | None" = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.result = reason, detail, result


@dataclass
class VideoResult:
    """What one video gave. ``pairs``: (n, 2, S, S, 3) uint8 RGB; ``track_patches``: (n, T, S, S, 3) or None;
    ``records``: n dicts (track_id, start_frame, end_frame, box_start, box_end, motion; boxes in source px);
    ``track_boxes``: n lists of T source-px boxes (T = track_length + 1)."""

    frames: int = 0
    seconds: float = 0.0
    pairs: np.ndarray | None = None
    track_patches: np.ndarray | None = None
    records: list[dict] = field(default_factory=list)
    track_boxes: list[list[list[float]]] = field(default_factory=list)
    tracks_rejected: Counter = field(default_factory=Counter)
    starts_rejected: Counter = field(default_factory=Counter)
    starts_accepted: int = 0
    cuts: list[int] = field(default_factory=list)


def start_frames(num_frames: int, cfg: MineConfig) -> list[int]:
    """Candidate start frames: at least ``start_stride`` apart, at most ``max_start_frames``, spread evenly from
    frame 1 (frame 0 has no predecessor to measure motion against) to the last frame a full track fits after."""
    last = num_frames - 1 - cfg.track_length
    if last < 1:
        return []
    count = min(cfg.max_start_frames, (last - 1) // cfg.start_stride + 1)
    return sorted(set(np.linspace(1, last, count).round().astype(int).tolist()))


def mine_video(reader: VideoReader, cfg: MineConfig, on_frames: Callable[[int], None] | None = None) -> VideoResult:
    """Mine ``reader``'s video. Raises :class:`SkipVideo` when it is unusable or yields no pair (the result so far
    rides along, for its statistics); :class:`vidssl.errors.VideoError` propagates from decoding. ``on_frames(n)``
    is called every few dozen decoded frames (progress)."""
    t0 = time.perf_counter()
    short = min(reader.width, reader.height)
    if cfg.box_fraction * short < cfg.min_box_px:
        raise SkipVideo("too_small", f"{reader.width}x{reader.height}: a box of {cfg.box_fraction} x {short} px is "
                                     f"under mine.min_box_px={cfg.min_box_px}")
    n = reader.num_frames
    if n < cfg.track_length + 2:
        raise SkipVideo("too_short", f"{n} frames; a track needs mine.track_length + 2 = {cfg.track_length + 2}")
    miner = _Miner(cfg, resized_shape(reader.height, reader.width, cfg.working_side), start_frames(n, cfg))
    reported = 0
    for index, frame in reader.frames(max_side=cfg.working_side):
        miner.feed(index, frame)
        if on_frames is not None and miner.result.frames - reported >= 32:
            on_frames(miner.result.frames - reported)
            reported = miner.result.frames
    if on_frames is not None and miner.result.frames > reported:
        on_frames(miner.result.frames - reported)
    result = miner.finish((reader.width / miner.work_w, reader.height / miner.work_h))
    result.seconds = time.perf_counter() - t0
    if result.pairs is None:
        raise SkipVideo(*_why_empty(result), result=result)
    return result


class _Miner:
    """The state of one pass over a video: running tracks, kept tracks, caps, statistics."""

    def __init__(self, cfg: MineConfig, work_shape: tuple[int, int], candidates: list[int]):
        self.cfg = cfg
        self.work_h, self.work_w = work_shape
        self.side = int(round(cfg.box_fraction * min(work_shape)))
        self.margin = int(round(cfg.edge_margin * min(work_shape)))
        self.scale = min(1.0, cfg.track_box_px / self.side)
        self.small_size = (max(1, round(self.work_w * self.scale)), max(1, round(self.work_h * self.scale)))
        self.candidates = set(candidates)
        self.estimator = MotionEstimator(cfg.motion_method, cfg.motion_points, cfg.move_threshold, cfg.ransac_px,
                                         MIN_CAMERA_POINTS)
        self.cuts = CutDetector(cfg.cut_threshold)
        self.result = VideoResult()
        self.active: list[Track] = []
        self.kept: list[Track] = []
        self.region_used: Counter = Counter()  # kept + running tracks per region
        self.next_id = 0
        self.prev_frame: np.ndarray | None = None

    def feed(self, index: int, frame: np.ndarray) -> None:
        """Process working frame ``index`` (H, W, 3) RGB uint8; frames come in order."""
        self.result.frames += 1
        # everything done on every frame runs on the small frame: one resize of the working frame per frame
        small = cv2.resize(frame, self.small_size, interpolation=cv2.INTER_AREA)
        small_gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        is_cut = self.cuts.update(small_gray)
        if is_cut:
            self.result.cuts.append(index)
            for track in self.active:  # the pair would show two different shots
                self._drop(track, "cut")
            self.active = []
        starting = index in self.candidates
        small_bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if self.active or starting else None  # KCF reads BGR
        survivors = []
        for track in self.active:
            outcome = track.step(small_bgr, small_gray, frame)
            if outcome is None:
                survivors.append(track)
            elif outcome == "done":
                self.kept.append(track)
            else:
                self._drop(track, outcome)
        self.active = survivors
        if starting:
            self._start(index, frame, small_bgr, small_gray, is_cut)
        self.prev_frame = frame

    def _drop(self, track: Track, reason: str) -> None:
        self.result.tracks_rejected[reason] += 1
        self.region_used[track.region] -= 1

    def _start(self, index: int, frame: np.ndarray, small_bgr: np.ndarray, small_gray: np.ndarray,
               is_cut: bool) -> None:
        """Candidate start frame: measure motion and start tracks on the boxes holding the most moving points."""
        cfg, result = self.cfg, self.result
        motion = None
        if is_cut:
            reason = "cut"  # motion across a cut is meaningless
        elif len(self.kept) + len(self.active) >= cfg.max_pairs_per_video:
            reason = "video_cap"
        elif len(self.active) >= cfg.max_active_tracks:
            reason = "busy"
        else:
            motion = self.estimator(cv2.cvtColor(self.prev_frame, cv2.COLOR_RGB2GRAY),
                                    cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
            reason = _motion_blocker(motion, cfg)
        if reason is not None:
            result.starts_rejected[reason] += 1
            return
        result.starts_accepted += 1
        room = min(cfg.boxes_per_start, cfg.max_active_tracks - len(self.active),
                   cfg.max_pairs_per_video - len(self.kept) - len(self.active))
        chosen = select_boxes(motion.points, motion.moving, (self.work_h, self.work_w), self.side, room,
                              self.margin, cfg.min_box_points,
                              avoid=[] if cfg.overlap_running else [t.boxes[-1] for t in self.active])
        started = 0
        for box, _count in chosen:
            region = _region(box, self.work_w, self.work_h, cfg.region_grid)
            if self.region_used[region] >= cfg.max_pairs_per_region:
                continue
            self.region_used[region] += 1
            self.active.append(Track(self.next_id, index, box, _box_motion(motion, box), region, self.scale,
                                     small_bgr, small_gray, frame, cfg))
            self.next_id += 1
            started += 1
        if not started:
            result.starts_rejected["no_box"] += 1

    def finish(self, to_source: tuple[float, float]) -> VideoResult:
        """The result, boxes scaled to source pixels by ``to_source`` (sx, sy)."""
        sx, sy = to_source

        def source_box(box) -> list[float]:
            x, y, w, h = box
            return [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)]

        result = self.result
        result.tracks_rejected["video_ended"] += len(self.active)  # fewer frames decoded than announced
        result.tracks_rejected = +result.tracks_rejected  # drop zero counts
        kept = sorted(self.kept, key=lambda t: t.track_id)
        for track in kept:
            result.records.append({"track_id": track.track_id, "start_frame": track.start, "end_frame": track.end,
                                   "box_start": source_box(track.boxes[0]), "box_end": source_box(track.boxes[-1]),
                                   "motion": round(track.motion, 4)})
            result.track_boxes.append([source_box(b) for b in track.boxes])
        if kept:
            result.pairs = np.stack([np.stack([t.patches[0], t.patches[-1]]) for t in kept])
            if self.cfg.store_tracks:
                result.track_patches = np.stack([np.stack(t.patches) for t in kept])
        return result


def _motion_blocker(motion, cfg: MineConfig) -> str | None:
    """Why a start frame is rejected by its camera-compensated motion, or None."""
    if motion is None:
        return "no_camera_fit"
    if motion.fraction < cfg.min_moving_fraction:
        return "too_static"
    if motion.fraction > cfg.max_moving_fraction:
        return "too_moving"
    return None


def _why_empty(result: VideoResult) -> tuple[str, str]:
    """(skip reason, detail) for a video that gave no pair."""
    r = result.starts_rejected
    if result.starts_accepted == 0:
        # the commonest obstacle names the video: still, everything moving (or no camera fit), or cut to pieces
        votes = {"no_motion": r["too_static"], "all_motion": r["too_moving"] + r["no_camera_fit"], "cuts": r["cut"]}
        return max(votes, key=votes.get), f"no usable start frame ({dict(+r)})"
    return "no_tracks", f"every track was rejected ({dict(result.tracks_rejected)})"


def _region(box, width: int, height: int, grid: int) -> int:
    x, y, w, h = box
    col = min(grid - 1, int((x + w / 2) * grid / width))
    row = min(grid - 1, int((y + h / 2) * grid / height))
    return row * grid + col


def _box_motion(motion, box) -> float:
    """Mean residual motion (working px per frame) of the moving points inside ``box``."""
    x, y, w, h = box
    p = motion.points
    inside = motion.moving & (p[:, 0] >= x) & (p[:, 0] < x + w) & (p[:, 1] >= y) & (p[:, 1] < y + h)
    return float(motion.residual[inside].mean()) if inside.any() else 0.0
