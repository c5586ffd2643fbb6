"""Configuration of the tracking (mining) stage. Owned by tracking/; composed into vidssl.config.Config.

Where the paper (Wang & Gupta 2015, section 3) gives a value, the default follows it but for the moving-fraction band,
which the paper set to 25-75% and which rejects every frame of some hand-held and animated clips, and the box size
(0.5 of the short side against the paper's 227 px in 448x600 frames, 0.507) and the stored view (2x the tracked box
against the paper's box itself); ``configs/mine_paper.yaml`` restores all three. What the paper leaves open is this
project's choice: trackers updated every ``track_step`` = 2 frames, KCF's failure threshold, the checks on every
window (cuts, drift, a box its motion left).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vidssl.errors import ConfigError
from vidssl.schema import opt

MOTION_METHODS = ("lk", "dis", "orb", "sift")  # tracking.motion.CORRESPONDENCES; kept cv2-free here
TRACKERS = ("kcf", "csrt")  # tracking.track.TRACKERS
# mine.json keys whose default is not what folders mined before them did: a record without one was mined as this
IMPLIED_WHEN_ABSENT = {"patch_context": 1.0}  # before the key, the patch was the tracked box
MIN_CAMERA_POINTS = 20  # fewer correspondences than this: the homography is not trusted and the frame is rejected


@dataclass
class MineConfig:
    """mining positive pairs by tracking moving regions (vidssl mine)"""

    working_side: int = opt(600, "long side (px) frames are analysed and tracked at; larger videos are downscaled at "
                                 "decode (paper: 448x600), smaller ones are not upscaled")
    motion_method: str = opt("lk", "point correspondences for camera compensation: lk (grid points + pyramidal LK, "
                                   "as dense trajectories) | dis (dense DIS flow on a grid) | orb | sift")
    motion_points: int = opt(400, "points (about) followed per analysed frame pair")
    move_threshold: float = opt(0.5, "a point moves when its residual after the camera homography exceeds this many "
                                     "working px per frame (paper: 0.5)")
    ransac_px: float = opt(0.5, "RANSAC inlier distance (working px) of the background homography; as move_threshold, "
                                "so the points the camera explains are exactly the still ones")
    min_moving_fraction: float = opt(0.1, "a start frame is rejected as too static below this share of moving "
                                          "points (paper: 0.25, see configs/mine_paper.yaml)")
    max_moving_fraction: float = opt(0.9, "a start frame is rejected (camera shake, failed compensation) above "
                                          "this share of moving points (paper: 0.75)")
    box_fraction: float = opt(0.5, "side of the square box as a fraction of the frame's short side "
                                   "(paper: 227 px in 448x600, 0.507)")
    min_box_px: int = opt(32, "videos whose box would be smaller than this many px at working resolution (after "
                              "the working_side downscale) are skipped (too_small)")
    min_box_points: int = opt(8, "moving points a box must hold to start a track")
    edge_margin: float = opt(0.05, "boxes start only this far (fraction of the short side) inside the frame edge; "
                                   "a box touching the edge ends its track (border padding would enter the patch)")
    boxes_per_start: int = opt(2, "at most this many non-overlapping boxes start tracks on one start frame")
    start_stride: int = opt(4, "frames between candidate start frames (at least; longer videos spread their "
                               "max_start_frames over the whole length)")
    max_start_frames: int = opt(1000, "candidate start frames per video, spread evenly through it")
    max_active_tracks: int = opt(3, "trackers running at once; new tracks start only on regions none of them covers")
    track_length: int = opt(30, "frames between the two patches of a pair (paper: 30 frames tracked per pair)")
    pair_stride: int = opt(2, "a running tracker opens a pair window every this many frames (windows overlap: a "
                              "moving object yields a pair every pair_stride frames)")
    track_span: int = opt(120, "frames one tracker runs at most; then the object must be found again by motion, "
                               "which re-centres a box that slid off it")
    track_step: int = opt(2, "trackers are updated on every track_step-th frame (1: every frame); halves KCF's cost, "
                             "which dominates mining (tools/bench_mining.py); on the spinning demo discs 96.6% of "
                             "pairs end on their object against 97.9% at 1 (204 pairs against 235)")
    tracker: str = opt("kcf", "tracker: kcf (reports its failures) | csrt (slower, never reports failure: drifts)")
    kcf_detect_thresh: float = opt(0.3, "KCF reports failure when its peak response is under this (OpenCV's default "
                                        "0.5 dropped 3x more real tracks, and every track of the spinning demo discs)")
    track_box_px: int = opt(32, "trackers run on frames shrunk by the integer factor that makes the box about this "
                                "many px; KCF's cost grows with box area (0.6 ms per update at 32 px, 2.2 ms at "
                                "64 px, 29 ms at 227 px)")
    cut_threshold: float = opt(0.6, "a frame starts a new shot when 1 - NCC of its 32x24 grey thumbnail with the "
                                    "previous frame's exceeds this")
    min_patch_ncc: float = opt(0.5, "appearance check: consecutive tracked patches (16x16 grey) must correlate at "
                                    "least this much")
    frozen_mad: float = opt(2.0, "a window whose last box's 16x16 grey thumbnail (cut from the tracking frame) "
                                 "differs from its first box's by less than this mean absolute grey level is a "
                                 "frozen tracker (rejected)")
    max_pairs_per_video: int = opt(150, "cap on pairs per video, so one clip cannot dominate the set; spread over the "
                                        "video: by frame i of n, at most cap x (i + track_span) / n")
    region_grid: int = opt(3, "the frame is split into region_grid x region_grid regions for the per-region cap")
    max_pairs_per_region: int = opt(60, "cap on pairs per video whose start box centre falls in one region")
    patch_size: int = opt(96, "side of the stored square patches in pixels")
    patch_context: float = opt(2.0, "stored patches show this many times the tracked box's side around its centre "
                                    "(shifted into the frame where the wider window would leave it, never wider "
                                    "than the frame's short side; tracking.boxes.context_box; 2 with a box of "
                                    "half the short side: the short side itself); 1 cuts the tracked box (the "
                                    "paper; the default before the wider views, which lifted DAVIS: README, What "
                                    "was tried). Records keep the tracked box, and where it lies in each patch "
                                    "(data.box_view); vidssl pretrain cuts its held-out tracks with "
                                    "pretrain.held_out_patch_context")
    time_range: list[float] = opt([0.0, 1.0], "part of every video mined, as fractions of its frame count (on a "
                                              "variable-frame-rate clip not quite of its duration; vidssl pretrain "
                                              "on real videos mines the last pretrain.held_out_tail of this part "
                                              "apart, for the instance-retrieval evaluation)")
    store_tracks: bool = opt(False, "also store the patches between the two of each pair (every track_step-th "
                                    "frame; shards/<video>.tracks.npy)")
    background_patches: bool = opt(True, "also store a same-frame background patch with each pair: the box of the "
                                          "same size beside the tracked one where the first patch was cut, the "
                                          "in-frame shift overlapping it least (shards hold first, last, "
                                          "background); miner.background_negatives trains on them")

    def box_fits(self, short_side: int) -> bool:
        """Whether the box on a working frame of this short side is at least min_box_px (else: too_small)."""
        return self.box_fraction * short_side >= self.min_box_px

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"config key 'mine.{key}': {why}, got {getattr(self, key)!r}")

        if self.motion_method not in MOTION_METHODS:
            raise bad("motion_method", f"must be one of {list(MOTION_METHODS)}")
        if self.tracker not in TRACKERS:
            raise bad("tracker", f"must be one of {list(TRACKERS)}")
        for key in ("working_side", "motion_points", "min_box_px", "boxes_per_start", "start_stride",
                    "max_start_frames", "max_active_tracks", "track_length", "pair_stride", "track_span",
                    "track_step", "track_box_px", "max_pairs_per_video", "region_grid", "max_pairs_per_region",
                    "patch_size"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        if self.working_side < 64:
            raise bad("working_side", "must be >= 64")
        if self.track_box_px < 16:
            raise bad("track_box_px", "must be >= 16 (KCF needs some texture to correlate)")
        if self.patch_size < 16:  # 7-px patches were stored, and training upscaled each one 9x with a warning
            raise bad("patch_size", "must be >= 16 (the stored patch is what training crops and resizes to "
                                    "data.patch_size, at least 32)")
        for key in ("move_threshold", "ransac_px"):
            if getattr(self, key) <= 0:
                raise bad(key, "must be > 0")
        for key in ("min_moving_fraction", "max_moving_fraction", "min_patch_ncc", "kcf_detect_thresh"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise bad(key, "must be in [0, 1]")
        if self.min_moving_fraction >= self.max_moving_fraction:
            raise bad("min_moving_fraction", f"must be below max_moving_fraction ({self.max_moving_fraction})")
        if not 0.0 < self.box_fraction <= 0.9:
            raise bad("box_fraction", "must be in (0, 0.9]")
        if not 0.0 <= self.edge_margin < 0.25:
            raise bad("edge_margin", "must be in [0, 0.25)")
        if self.box_fraction + 2 * self.edge_margin > 1.0:  # no place for a box: every video would be "no_start"
            raise bad("box_fraction", f"plus twice mine.edge_margin ({self.edge_margin}) must be <= 1: a box of "
                                      f"{self.box_fraction} x the short side, kept that far inside both edges, "
                                      "does not fit in the frame")
        if not 1.0 <= self.patch_context <= 4.0:  # under 1 cuts into the object the track follows
            raise bad("patch_context", "must be in [1, 4] (1: the tracked box itself)")
        if self.cut_threshold <= 0:
            raise bad("cut_threshold", "must be > 0")
        if self.frozen_mad < 0:
            raise bad("frozen_mad", "must be >= 0")
        for key in ("track_length", "pair_stride"):
            if getattr(self, key) % self.track_step:
                raise bad(key, f"must be a multiple of mine.track_step ({self.track_step}): pairs end on updated "
                               f"frames")
        if self.track_span < self.track_length:
            raise bad("track_span", f"must be >= mine.track_length ({self.track_length})")
        if len(self.time_range) != 2 or not 0.0 <= self.time_range[0] < self.time_range[1] <= 1.0:
            raise bad("time_range", "must be [first, end] with 0 <= first < end <= 1")
        if self.min_box_points < 1:
            raise bad("min_box_points", "must be >= 1")
        # each of these left every video skipped, blamed on its content: no camera fit ("all_motion"), or no box
        # holding enough moving points ("no_start")
        if self.motion_points < MIN_CAMERA_POINTS:
            raise bad("motion_points", f"must be >= {MIN_CAMERA_POINTS}: the camera's motion is fitted to at least "
                                       f"{MIN_CAMERA_POINTS} point matches")
        if self.motion_points * self.box_fraction ** 2 < self.min_box_points:  # a square frame's share, the most
            raise bad("motion_points", f"gives a box of mine.box_fraction={self.box_fraction:g} about "
                                       f"{self.motion_points * self.box_fraction ** 2:.1f} points at most, under "
                                       f"mine.min_box_points={self.min_box_points}: no track could start; use at "
                                       f"least {math.ceil(self.min_box_points / self.box_fraction ** 2)}")
