"""Unit tests of the tracking stage's parts, each against an independent reference (a loop, a closed form, a
synthetic scene with known motion)."""
from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracking.boxes import STRIDE, select_boxes
from tracking.config import MineConfig
from tracking.cuts import cut_score, detect_cuts, thumbnail
from tracking.dataset import video_id
from tracking.motion import MotionEstimator
from tracking.track import Track, crop, ncc
from tracking.video_miner import _Miner, frame_range, shrink, shrink_factor, start_frames
from vidssl.commands.mine import parse_shard
from vidssl.config import load_config
from vidssl.errors import ConfigError, UsageError, VidsslError


def texture(rng, h, w, cell=6):
    """Random blocky texture with corners everywhere (uint8, (h, w))."""
    small = rng.integers(0, 256, size=(h // cell + 1, w // cell + 1)).astype(np.uint8)
    big = cv2.resize(small, (w + cell, h + cell), interpolation=cv2.INTER_NEAREST)[:h, :w]
    return cv2.GaussianBlur(big, (3, 3), 0)


# ---------------------------------------------------------------------------------------------------------------
# box selection


def naive_best_boxes(points, moving, shape, side, k, margin, min_points):
    """Greedy reference by brute force: count points in every candidate box with a Python loop; once a box is
    chosen, the moving points within half a box of it no longer count (the rest of its object)."""
    h, w = shape
    moving = list(moving)
    positions = [(x, y) for y in range(margin, h - side - margin + 1, STRIDE)
                 for x in range(margin, w - side - margin + 1, STRIDE)]
    chosen = []
    for _ in range(k):
        best, best_count = None, -1
        for x, y in positions:
            if any(x < cx + side and cx < x + side and y < cy + side and cy < y + side for (cx, cy), _ in chosen):
                continue
            inside = [m for (px, py), m in zip(points, moving) if x <= int(px) < x + side and y <= int(py) < y + side]
            count = sum(inside)
            if count < min_points:
                continue
            if count > best_count:  # strict: the first position (row-major) wins ties
                best, best_count = (x, y), count
        if best is None:
            break
        # among the tied positions, the one centred nearest the centroid of the first one's points
        bx, by = best
        inside = [(int(px), int(py)) for (px, py), m in zip(points, moving)
                  if m and bx <= int(px) < bx + side and by <= int(py) < by + side]
        cx, cy = np.mean([p[0] for p in inside]), np.mean([p[1] for p in inside])
        tied = [(x, y) for x, y in positions
                if not any(x < ox + side and ox < x + side and y < oy + side and oy < y + side
                           for (ox, oy), _ in chosen)
                and sum(m for (px, py), m in zip(points, moving)
                        if x <= int(px) < x + side and y <= int(py) < y + side) == best_count]
        best = min(tied, key=lambda q: (q[0] + side / 2 - cx) ** 2 + (q[1] + side / 2 - cy) ** 2)
        chosen.append((best, best_count))
        bx, by = best
        moving = [m and not (bx - side / 2 <= px < bx + 1.5 * side and by - side / 2 <= py < by + 1.5 * side)
                  for (px, py), m in zip(points, moving)]
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_select_boxes_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape, side = (60, 84), 24
    # two moving clusters plus still points everywhere: the greedy choice and the non-overlap rule both matter
    points = np.concatenate([rng.normal((20, 20), 4, size=(30, 2)), rng.normal((60, 40), 5, size=(25, 2)),
                             rng.uniform((0, 0), (84, 60), size=(40, 2))]).astype(np.float32)
    moving = np.arange(len(points)) < 55
    ok = (points[:, 0] >= 0) & (points[:, 0] < 84) & (points[:, 1] >= 0) & (points[:, 1] < 60)
    points, moving = points[ok], moving[ok]
    got = select_boxes(points, moving, shape, side, k=3, margin=2, min_points=3)
    want = naive_best_boxes(points, moving, shape, side, k=3, margin=2, min_points=3)
    assert [((int(b[0]), int(b[1])), c) for b, c in got] == want
    assert len(got) >= 2


def test_a_wide_object_gets_one_box_and_the_next_goes_to_another_object():
    """An object twice the box's width: the points around the first box are its own object, so the second box
    goes to the small object elsewhere, not to the wide object's other half (deleting that rule passed every box
    test: their objects were never wider than a box)."""
    rng = np.random.default_rng(0)
    shape, side = (60, 120), 24
    wide = rng.uniform((8, 24), (56, 48), size=(90, 2))  # 48 px wide
    small = rng.uniform((92, 8), (104, 20), size=(12, 2))
    points = np.concatenate([wide, small, rng.uniform((0, 0), (120, 60), size=(30, 2))]).astype(np.float32)
    moving = np.arange(len(points)) < 102
    got = select_boxes(points, moving, shape, side, k=2, margin=2, min_points=3)
    want = naive_best_boxes(points, moving, shape, side, k=2, margin=2, min_points=3)
    assert [((int(b[0]), int(b[1])), c) for b, c in got] == want
    assert len(want) == 2 and want[1][0][0] >= 80  # the second box is the small object's


@pytest.mark.filterwarnings("error")  # numpy's "Mean of empty slice" where the tie-break found no point
def test_points_followed_out_of_the_frame_count_at_its_edge_in_both_steps():
    """At mine.edge_margin 0, a box at the frame's edge counted the points LK had followed just outside it (clipped
    to the edge) but its tie-break looked for them unclipped: an empty centroid, and the tie fell to row-major order."""
    rng = np.random.default_rng(0)
    shape, side = (60, 84), 24
    points = np.concatenate([rng.uniform((-6, 20), (-0.5, 40), size=(12, 2)),  # beyond the left edge
                             rng.uniform((0, 0), (84, 60), size=(30, 2))]).astype(np.float32)
    moving = np.arange(len(points)) < 12
    got = select_boxes(points, moving, shape, side, k=1, margin=0, min_points=3)
    clipped = np.stack([np.clip(points[:, 0].astype(int), 0, 83), np.clip(points[:, 1].astype(int), 0, 59)], 1)
    want = naive_best_boxes(clipped.astype(np.float32), moving, shape, side, k=1, margin=0, min_points=3)
    assert [((int(b[0]), int(b[1])), c) for b, c in got] == want and want[0][1] == 12


def test_select_boxes_centres_a_small_object():
    # 9 moving points in a 6 px square around (40, 30); a 20 px box holds them all from many positions
    points = np.array([[38 + dx, 28 + dy] for dx in range(0, 6, 2) for dy in range(0, 6, 2)], np.float32)
    (box, count), = select_boxes(points, np.ones(len(points), bool), (60, 80), 20, k=1, margin=0, min_points=3)
    assert count == 9
    # centroid (40, 30): the box centre lands within half a grid step of it
    assert abs(box[0] + 10 - 40) <= STRIDE / 2 and abs(box[1] + 10 - 30) <= STRIDE / 2


def test_select_boxes_respects_margin_avoid_and_minimum():
    points = np.array([[5, 5]] * 10 + [[50, 30]] * 4 + [[70, 50]] * 6, np.float32)
    moving = np.array([True] * 14 + [False] * 6)
    shape, side = (60, 80), 20
    # the dense corner cluster lies inside the margin, so no allowed box holds 5 moving points
    assert select_boxes(points, moving, shape, side, k=5, margin=8, min_points=5) == []
    boxes = select_boxes(points, moving, shape, side, k=5, margin=0, min_points=4)
    assert [c for _, c in boxes] == [10, 4]
    # the corner cluster is a running track's: nothing near it starts, nothing overlapping it either
    avoided = select_boxes(points, moving, shape, side, k=5, margin=0, min_points=4, avoid=[(0.0, 0.0, 10.0, 10.0)])
    assert [c for _, c in avoided] == [4]


@pytest.mark.parametrize("edge", ["right", "bottom"])
def test_a_box_can_start_at_the_last_position_inside_the_margin(edge):
    """The free width and height (84 - 24 - 2 x 2 = 56, 60 - 24 - 2 x 2 = 32) are multiples of the stride, so the
    last position lies exactly margin px from the edge; points in the last stride before the margin are inside no
    other box."""
    shape, side, margin = (60, 84), 24, 2
    # x 78..81 lie only in a box at x 58; y 54..57 only in a box at y 34
    corner = [[78, 20], [79, 21], [80, 22], [81, 23]] if edge == "right" else [[38, 54], [39, 55], [40, 56], [41, 57]]
    points = np.array(corner * 3, np.float32)
    moving = np.ones(len(points), bool)
    got = select_boxes(points, moving, shape, side, k=1, margin=margin, min_points=3)
    assert [((int(b[0]), int(b[1])), c) for b, c in got] == naive_best_boxes(points, moving, shape, side, 1, margin, 3)
    (box, count), = got
    assert count == 12 and (box[0] == 84 - side - margin if edge == "right" else box[1] == 60 - side - margin)


@pytest.mark.parametrize("direction", ["right", "left", "below", "above"])
def test_a_box_may_touch_a_chosen_one(direction):
    """Two objects exactly a box apart: the second's box touches the first's and shares no pixel with it, so it
    starts there. Most of the second object lies just beyond the first box's half-box surroundings, one point pins its
    far edge: of the positions holding them all, the touching one is centred nearest them, and the next one over
    is 4 px off. Mirrored and transposed, each side of the overlap test is the one that decides."""
    shape, side = (120, 120), 24
    first = np.array([(48 + a, 48 + b) for a in (0, 4, 9, 14, 19, 23) for b in (0, 4, 9, 14, 19, 23)], np.float32)
    second = np.array([(84, 60)] * 20 + [(95, 60)], np.float32)  # x 84: the first box's surroundings end at 84
    want = [((48, 48), 36), ((72, 48), 21)]
    if direction in ("left", "above"):  # mirrored: pixel x -> 119 - x, box x -> 96 - x
        first[:, 0], second[:, 0] = 119 - first[:, 0], 119 - second[:, 0]
        want = [((96 - x, y), c) for (x, y), c in want]
    if direction in ("below", "above"):
        first, second = first[:, ::-1].copy(), second[:, ::-1].copy()
        want = [((y, x), c) for (x, y), c in want]
    points = np.concatenate([first, second])
    moving = np.ones(len(points), bool)
    got = select_boxes(points, moving, shape, side, k=2, margin=0, min_points=3)
    assert [((int(b[0]), int(b[1])), c) for b, c in got] == want
    assert naive_best_boxes(points, moving, shape, side, 2, 0, 3) == want


# ---------------------------------------------------------------------------------------------------------------
# motion after camera compensation


def scene_pair(rng, camera=(2.3, -1.2), obj_shift=(4.0, 3.0), obj=(60, 50, 50, 40)):
    """Two grey frames: a textured background seen by a translating camera, plus a textured object moving by
    ``obj_shift`` relative to the background. Returns (prev, cur, object box in cur)."""
    h, w = 180, 240
    bg = texture(rng, h + 40, w + 40)
    fg = texture(rng, obj[3], obj[2], cell=4)

    def render(cam, offset):
        world = bg.copy()
        x, y = int(obj[0] + offset[0]) + 20, int(obj[1] + offset[1]) + 20
        world[y:y + obj[3], x:x + obj[2]] = fg
        m = np.float32([[1, 0, -20 - cam[0]], [0, 1, -20 - cam[1]]])
        return cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR)

    prev = render((0.0, 0.0), (0.0, 0.0))
    cur = render(camera, obj_shift)
    x, y = obj[0] + obj_shift[0] - camera[0], obj[1] + obj_shift[1] - camera[1]
    return prev, cur, (x, y, obj[2], obj[3])


@pytest.mark.parametrize("method", ["lk", "dis", "sift"])
def test_motion_separates_object_from_camera(method):
    # not ORB: its keypoints are localised to about 1 px, above the 0.5 px threshold, so it calls most of the
    # background moving (61% here; tools/bench_mining.py --motion measures it on the demo clips)
    prev, cur, (x, y, w, h) = scene_pair(np.random.default_rng(0))
    motion = MotionEstimator(method, 400, 0.5, 1.0, 20)(prev, cur)
    assert motion is not None
    p = motion.points
    inside = (p[:, 0] >= x + 4) & (p[:, 0] < x + w - 4) & (p[:, 1] >= y + 4) & (p[:, 1] < y + h - 4)
    outside = (p[:, 0] < x - 10) | (p[:, 0] > x + w + 10) | (p[:, 1] < y - 10) | (p[:, 1] > y + h + 10)
    assert inside.sum() >= 5 and outside.sum() >= 20
    # the object moved 5 px relative to the background: its points move, the camera-explained background does not
    assert motion.moving[inside].mean() > 0.8
    assert motion.moving[outside].mean() < 0.1


def test_motion_of_a_pure_camera_pan_is_zero():
    prev, cur, _ = scene_pair(np.random.default_rng(1), camera=(3.4, 1.7), obj_shift=(0.0, 0.0))
    motion = MotionEstimator("lk", 400, 0.5, 1.0, 20)(prev, cur)
    assert motion.fraction < 0.05
    # the view moved by (3.4, 1.7) px, so the background moved by minus that, wherever it is looked at
    for x, y in [(10.0, 10.0), (120.0, 90.0), (230.0, 170.0)]:
        assert motion.camera_shift(x, y) == pytest.approx((-3.4, -1.7), abs=0.1)


def test_motion_rejects_a_frame_without_points():
    flat = np.full((120, 160), 128, np.uint8)
    assert MotionEstimator("lk", 400, 0.5, 1.0, 20)(flat, flat) is None


def test_lk_drops_most_points_of_a_region_whose_content_changed():
    """A still camera; between the frames a 64 x 56 region is covered by an unrelated texture, so its points have
    no true match. LK reports success for every one of them and lands each somewhere: without the forward-backward
    check all 36 were kept (31 to 35 of them "moving"); the round trip drops most (chance matches keep a few)."""
    from tracking.motion import LKCorrespondences, _grid

    x, y, w, h = 80, 60, 64, 56
    for seed in range(3):
        prev = texture(np.random.default_rng(seed), 180, 240)
        cur = prev.copy()
        cur[y:y + h, x:x + w] = texture(np.random.default_rng(50 + seed), h, w)
        p0, p1 = LKCorrespondences(400)(prev, cur)
        gx, gy = _grid(prev.shape, 400)
        region = int(((gx >= x) & (gx < x + w) & (gy >= y) & (gy < y + h)).sum())
        inside = (p0[:, 0] >= x) & (p0[:, 0] < x + w) & (p0[:, 1] >= y) & (p0[:, 1] < y + h)
        assert region == 36 and inside.sum() <= region / 2, seed
        # the unchanged background well away from the region: its points kept (332 on the grid, a few lost at the
        # frame's border), where they were
        far = (p0[:, 0] < x - 20) | (p0[:, 0] >= x + w + 20) | (p0[:, 1] < y - 20) | (p0[:, 1] >= y + h + 20)
        assert far.sum() >= 300 and np.abs(p1[far] - p0[far]).max() < 0.1, seed


def test_camera_shift_of_a_perspective_homography():
    """The shift at a point is the homography's projective map, divided by its third coordinate; every other
    test's camera is affine (third coordinate 1), where forgetting the division changes nothing."""
    from tracking.motion import Motion

    homography = np.array([[1.02, 0.01, 3.0], [-0.02, 0.98, -2.0], [1e-4, -2e-4, 1.0]])
    none = np.zeros(0, np.float32)
    motion = Motion(np.zeros((0, 2), np.float32), none, none.astype(bool), homography)
    for x, y in [(0.0, 0.0), (200.0, 10.0), (30.0, 170.0), (239.0, 179.0)]:
        u, v = cv2.perspectiveTransform(np.array([[[x, y]]]), homography)[0, 0]
        assert motion.camera_shift(x, y) == pytest.approx((u - x, v - y), abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# cuts, start frames, appearance


def test_cut_score_and_detection():
    rng = np.random.default_rng(0)
    a, b = texture(rng, 120, 160), texture(rng, 120, 160)
    shifted = np.roll(a, 2, axis=1)  # a small pan is not a cut
    assert cut_score(thumbnail(a), thumbnail(a)) == pytest.approx(0.0, abs=1e-6)
    assert cut_score(thumbnail(a), thumbnail(shifted)) < 0.3
    assert cut_score(thumbnail(a), thumbnail(b)) > 0.8
    flat = np.zeros_like(a)
    assert cut_score(thumbnail(flat), thumbnail(flat)) == 0.0  # a fade is not a cut per frame
    assert detect_cuts([a, shifted, a, b, b, flat], 0.6) == [3, 5]


def test_noise_on_a_black_frame_is_no_cut():
    # a black (or dark, one-colour) video with sensor or compression noise: consecutive frames share no layout,
    # only independent noise, which correlates at random; none of them starts a shot
    rng = np.random.default_rng(0)
    dark = [np.clip(16 + rng.normal(0, sd, (338, 600)), 0, 255).astype(np.uint8) for sd in (0.5, 1.5, 3.0)
            for _ in range(10)]
    assert detect_cuts(dark, 0.6) == []
    # the same noise over a scene leaves the scene's layout, and a cut from it to black is still one
    a = texture(rng, 338, 600)
    noisy = [np.clip(a + rng.normal(0, 3.0, a.shape), 0, 255).astype(np.uint8) for _ in range(5)]
    assert detect_cuts(noisy + dark[:3], 0.6) == [5]


def test_start_frames_spacing_and_cap():
    cfg = MineConfig(track_length=30, start_stride=10, max_start_frames=64)
    got = start_frames(100, cfg)
    # last start with room for a full track: 100 - 1 - 30 = 69; candidates from 1 every >= 10 frames
    assert got[0] == 1 and got[-1] == 69 and len(got) == 7
    assert all(b - a >= 10 for a, b in zip(got, got[1:]))
    long = start_frames(100_000, cfg)
    assert len(long) == 64 and long[0] == 1 and long[-1] == 100_000 - 31  # spread over the whole video
    assert start_frames(31, cfg) == []


class _ScriptedMotion:
    """A motion estimator that records the frames it is asked about (each test frame's grey level is its index)
    and finds motion only on the frames of ``moving_on``: a 24 px square of moving points at (20, 12)."""

    def __init__(self, moving_on=()):
        self.moving_on, self.analysed = set(moving_on), []

    def __call__(self, previous: np.ndarray, current: np.ndarray):
        from tracking.motion import Motion

        index = int(current[0, 0])
        self.analysed.append(index)
        ys, xs = np.mgrid[2:48:4, 2:64:4]
        points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        x, y = points[:, 0], points[:, 1]
        moving = (index in self.moving_on) & (x >= 20) & (x < 44) & (y >= 12) & (y < 36)
        return Motion(points, np.where(moving, 2.0, 0.0).astype(np.float32), moving, np.eye(3))


def _analysed_candidates(moving_on=()) -> tuple[list[int], Counter, int]:
    """Feed 130 flat 64x48 frames to a miner whose candidates are every 4 frames from 1 (start_stride 4) and whose
    motion is scripted: the candidates it analysed, its start-frame rejections and the tracks it started."""
    cfg = MineConfig()
    assert cfg.start_stride == 4
    miner = _Miner(cfg, (48, 64), list(range(1, 120, 4)), 0, 130)
    miner.estimator = _ScriptedMotion(moving_on)
    for i in range(130):
        miner.feed(i, np.full((48, 64, 3), i, np.uint8))
    return miner.estimator.analysed, +miner.result.starts_rejected, miner.result.tracks_started


def test_fruitless_start_frames_make_the_next_ones_wait_4_8_then_16_frames():
    """README, Tracking stage, step 3: after a candidate that starts nothing the next try comes 4, then 8, then 16
    frames after it for one, two, three or more fruitless candidates in a row ("with candidates 4 apart the first
    skips none, then one, then three"), and a candidate that starts a track ends such a run. The schedule was
    untested: waits of 8, 16, 32 frames passed every test."""
    analysed, rejected, started = _analysed_candidates()
    # still throughout: 1, then +4, +8, then +16 on each
    assert analysed == [1, 5, 13, 29, 45, 61, 77, 93, 109]
    assert rejected == {"too_static": 9} and started == 0
    # frame 29 (the fourth, three fruitless before it) starts a track: the next candidate (33) is tried again,
    # and the waits grow anew
    analysed, rejected, started = _analysed_candidates(moving_on={29})
    assert analysed == [1, 5, 13, 29, 33, 37, 45, 61, 77, 93, 109]
    assert rejected == {"too_static": 10} and started == 1


def test_frame_range_parts_meet_at_the_nearest_frame_with_no_overlap():
    """A cut c of mine.time_range (pretrain's [0, 0.8] trained, [0.8, 1] held out) is the frame nearest c * n,
    computed exactly: truncating a float product put 0.29 * 100 = 28.999... at frame 28, and rounding the end up
    made the two parts share a frame."""
    from fractions import Fraction

    for n in (283, 101, 97, 100):
        for c in (0.8, 0.29, 0.57):
            exact = Fraction(str(c)) * n
            assert exact.denominator == 1 or exact - int(exact) != Fraction(1, 2), (n, c)  # no tie to break
            nearest = int(exact + Fraction(1, 2))
            head = frame_range(n, MineConfig(time_range=[0.0, c]))
            tail = frame_range(n, MineConfig(time_range=[c, 1.0]))
            assert head == (0, nearest) and tail == (nearest, n), (n, c, head, tail)
            assert set(range(*head)) | set(range(*tail)) == set(range(n))
            assert not set(range(*head)) & set(range(*tail))


def test_ncc_and_crop():
    rng = np.random.default_rng(0)
    a = texture(rng, 16, 16, cell=2).astype(np.float32)
    assert ncc(a, a) == pytest.approx(1.0)
    assert ncc(a, 255 - a) == pytest.approx(-1.0)
    assert ncc(a, np.full_like(a, 7)) == 0.0
    frame = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3).astype(np.uint8)
    assert np.array_equal(crop(frame, (10, 5, 8, 8), 8), frame[5:13, 10:18])


def run_track(frames, box, length, scale=1.0, step=1, pair_stride=None, open_until=0, first=0, **settings):
    """Follow ``box`` through ``frames`` with a Track started on frame ``first``: a window opens there and every
    ``pair_stride`` frames up to ``open_until`` frames after it (``settings``: more MineConfig keys). Returns
    (track, pairs, dropped windows by reason, why the track ended or None)."""
    small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]
    pair_stride = pair_stride or step
    cfg = MineConfig(track_length=length, patch_size=24, track_step=step, pair_stride=pair_stride,
                     track_span=max(length, open_until + length), **settings)
    track = Track(0, first, box, 1.0, scale, cv2.cvtColor(small[first], cv2.COLOR_RGB2BGR),
                  cv2.cvtColor(small[first], cv2.COLOR_RGB2GRAY), frames[first], cfg)
    track.open_window(region=0)
    pairs, dropped, ended = [], Counter(), None
    for i, (f, s) in enumerate(zip(frames, small)):
        if i <= first or not track.wants(i):
            continue
        outcome = track.step(i, cv2.cvtColor(s, cv2.COLOR_RGB2BGR), cv2.cvtColor(s, cv2.COLOR_RGB2GRAY), f)
        pairs += outcome.pairs
        dropped += outcome.dropped
        if outcome.ended is not None:
            ended = outcome.ended
            break
        if i - first <= open_until and (i - first) % pair_stride == 0:
            track.open_window(region=0)
    return track, pairs, dropped, ended


def moving_square_frames(rng, n, velocity, start=(40, 40), size=32, shape=(120, 160), brighten=0.0):
    """RGB frames of a textured square moving at ``velocity`` px/frame over a flat background, its brightness
    rising by ``brighten`` grey levels per frame (as lighting changes: real patches never repeat exactly)."""
    bg = np.full((*shape, 3), 90, np.uint8)
    texture_rgb = np.stack([texture(rng, size, size, cell=4)] * 3, axis=-1).astype(np.float32)
    frames = []
    for t in range(n):
        obj = np.clip(texture_rgb * 0.8 + brighten * t, 0, 255).astype(np.uint8)
        f = bg.copy()
        x, y = int(round(start[0] + velocity[0] * t)), int(round(start[1] + velocity[1] * t))
        xs, ys = max(x, 0), max(y, 0)
        xe, ye = min(x + size, shape[1]), min(y + size, shape[0])
        if xe > xs and ye > ys:
            f[ys:ye, xs:xe] = obj[ys - y:ye - y, xs - x:xe - x]
        frames.append(f)
    return frames


@pytest.mark.parametrize("scale,step", [(1.0, 1), (0.5, 1), (1.0, 2)])
def test_track_follows_a_moving_square(scale, step):
    frames = moving_square_frames(np.random.default_rng(0), 11, (3, 1), brighten=2.0)
    # the patch is the box (patch_context 1), so a crop of it is the reference; the wider view: tests/test_mine.py
    _, pairs, dropped, ended = run_track(frames, (40.0, 40.0, 32.0, 32.0), 10, scale=scale, step=step,
                                         patch_context=1.0)
    assert ended is None and not dropped and len(pairs) == 1
    pair = pairs[0]
    assert (pair.start, pair.end) == (0, 10)
    assert [s.frame for s in pair.steps] == list(range(0, 11, step))  # updated every `step` frames
    # every box on the known trajectory, start + t * velocity (KCF primed: no one-frame lag)
    for s in pair.steps:
        x, y, _, _ = s.box
        assert abs(x - (40 + 3 * s.frame)) <= 1 / scale and abs(y - (40 + s.frame)) <= 1 / scale, s.frame
    # the pair's patches are the boxes cut from the frames at both ends
    for s in (pair.steps[0], pair.steps[-1]):
        assert np.array_equal(s.patch, crop(frames[s.frame], s.box, 24))


def test_one_track_yields_a_pair_per_window():
    # 26 frames, windows of 10 frames opened every 4 frames up to frame 12: starts 0, 4, 8, 12 -> ends 10 .. 22
    frames = moving_square_frames(np.random.default_rng(1), 26, (2, 1), start=(20, 30), brighten=2.0)
    _, pairs, dropped, ended = run_track(frames, (20.0, 30.0, 32.0, 32.0), 10, step=2, pair_stride=4, open_until=12)
    assert ended is None and not dropped
    assert [(p.start, p.end) for p in pairs] == [(0, 10), (4, 14), (8, 18), (12, 22)]
    for p in pairs:
        x, y, _, _ = p.steps[0].box
        assert abs(x - (20 + 2 * p.start)) <= 1 and abs(y - (30 + p.start)) <= 1


def test_identical_first_and_last_patch_is_rejected_as_frozen():
    # a tracker stuck on a static region; also a perfectly rigid, unlit object: a pair that teaches nothing
    for velocity in ((0, 0), (3, 1)):
        frames = moving_square_frames(np.random.default_rng(0), 11, velocity)
        _, pairs, dropped, ended = run_track(frames, (40.0, 40.0, 32.0, 32.0), 10)
        assert not pairs and dropped == {"frozen": 1} and ended is None


def test_track_leaving_the_frame_is_dropped():
    # texture everywhere, sliding right by 4 px per frame: the tracker can follow the box out of the picture
    world = np.stack([texture(np.random.default_rng(0), 120, 400, cell=5)] * 3, axis=-1)
    frames = [np.ascontiguousarray(world[:, 200 - 4 * t:360 - 4 * t]) for t in range(30)]
    track, pairs, dropped, ended = run_track(frames, (100.0, 40.0, 32.0, 32.0), 25, pair_stride=2, open_until=4)
    assert ended == "left_frame" and not pairs and dropped == {"left_frame": 3}  # windows opened at 0, 2, 4 lost
    # x = 100 + 4t: the box touches the right edge of the 160 px frame at t = 7; until then it follows the texture
    assert [s.frame for s in track.history] == list(range(7))
    assert all(abs(s.box[0] - (100 + 4 * s.frame)) <= 1 and abs(s.box[1] - 40) <= 1 for s in track.history)


@pytest.mark.parametrize("tracker", [{"kcf_detect_thresh": 0.0}, {"tracker": "csrt"}])
def test_a_tracker_that_does_not_notice_its_object_change_ends_on_appearance(tracker):
    """The square's texture is swapped for an unrelated one at frame 6. With trackers that report no failure there
    (KCF with no detection threshold, CSRT), only the appearance check ends the track; switched off, the track ran on
    and its first window closed as a pair of two different things."""
    frames = moving_square_frames(np.random.default_rng(0), 12, (2, 1), brighten=2.0)
    _, pairs, dropped, ended = run_track(frames, (40.0, 40.0, 32.0, 32.0), 10, pair_stride=2, open_until=4, **tracker)
    assert ended is None and len(pairs) == 1  # the same frames unchanged: the tracker follows the square
    other = np.stack([texture(np.random.default_rng(100), 32, 32, cell=4)] * 3, axis=-1)
    for t in range(6, 12):
        frames[t][40 + t:72 + t, 40 + 2 * t:72 + 2 * t] = other
    track, pairs, dropped, ended = run_track(frames, (40.0, 40.0, 32.0, 32.0), 10, pair_stride=2, open_until=4,
                                             **tracker)
    assert ended == "appearance" and not pairs and dropped == {"appearance": 3}  # windows opened at 0, 2, 4
    assert not track.windows and track.last_frame == 5


def test_a_track_started_on_an_odd_frame_is_updated_on_its_own_step():
    """track_step 2 from frame 3: updates on 3, 5, ..., and the window closes on 13. Counted from frame 0 (frames 4,
    6, ...), its window could only close on 14, a frame past track_length, and not at all in these 14 frames."""
    frames = moving_square_frames(np.random.default_rng(0), 14, (3, 1), brighten=2.0)
    track, pairs, dropped, ended = run_track(frames, (49.0, 43.0, 32.0, 32.0), 10, step=2, first=3)
    assert [i for i in range(3, 14) if track.wants(i)] == [3, 5, 7, 9, 11, 13]
    assert ended is None and not dropped and [(p.start, p.end) for p in pairs] == [(3, 13)]
    assert [s.frame for s in pairs[0].steps] == [3, 5, 7, 9, 11, 13]
    assert all(abs(s.box[0] - (40 + 3 * s.frame)) <= 1 and abs(s.box[1] - (40 + s.frame)) <= 1 for s in pairs[0].steps)


# ---------------------------------------------------------------------------------------------------------------
# config, ids, shards


def test_paper_config_and_validation():
    paper = load_config(Path(__file__).parents[1] / "configs" / "mine_paper.yaml").mine  # from any working folder
    assert (paper.min_moving_fraction, paper.max_moving_fraction, paper.box_fraction) == (0.25, 0.75, 0.507)
    with pytest.raises(ConfigError, match="mine.min_moving_fraction"):
        load_config(None, ["mine.min_moving_fraction=0.95"])
    with pytest.raises(ConfigError, match="mine.tracker"):
        load_config(None, ["mine.tracker=medianflow"])
    with pytest.raises(ConfigError, match="mine.motion_method"):
        load_config(None, ["mine.motion_method=surf"])
    with pytest.raises(ConfigError, match="mine.pair_stride.*multiple of mine.track_step"):
        load_config(None, ["mine.pair_stride=3", "mine.track_step=2"])
    with pytest.raises(ConfigError, match="mine.track_span"):
        load_config(None, ["mine.track_span=20"])


def test_video_ids_are_stable_readable_and_distinct():
    assert video_id("a/clip.mp4") == video_id("a/clip.mp4")
    assert video_id("a/clip.mp4") != video_id("b/clip.mp4")
    assert video_id("a/my clip (1).mp4").startswith("my_clip_1_-")
    ids = {video_id(f"{d}/{n}.mp4") for d, n in itertools.product("abc", ["x", "y"])}
    assert len(ids) == 6


def test_parse_shard():
    assert parse_shard("1/4", {}) == (1, 4)
    assert parse_shard(None, {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard("0/2", {"RANK": "0", "WORLD_SIZE": "1"}) == (0, 2)  # one process: the flag wins
    # under torchrun every process got the flag: all took shard 0/2, and all but one were refused its lock
    with pytest.raises(UsageError, match=r"--shard 0/2 under torchrun \(WORLD_SIZE=2\): each of its processes would "
                                         r"mine that same shard; drop --shard"):
        parse_shard("0/2", {"RANK": "1", "WORLD_SIZE": "2"})
    for bad in ("2/2", "x", "1/0", "-1/2"):
        with pytest.raises(VidsslError):
            parse_shard(bad, {})


def test_shrink_is_a_block_mean_and_factors_are_fast_ones():
    # the tracking frame: k x k block means (exactly the area resize), against a naive reshape-mean
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (73, 101, 3)).astype(np.uint8)
    for k in (1, 2, 3, 4, 6, 8, 12):
        h, w = 73 // k, 101 // k
        want = frame[:h * k, :w * k].astype(np.float64).reshape(h, k, w, k, 3).mean(axis=(1, 3))
        got = shrink(frame, k)
        assert got.shape == (h, w, 3) and np.abs(got - want).max() <= 1.5, k  # uint8 rounding at each halving
    # nearest in log scale among 2^a and 3 * 2^a
    assert [shrink_factor(r) for r in (0.4, 1.3, 2.2, 2.9, 3.6, 5.3, 7.0, 10.0)] == [1, 1, 2, 3, 4, 6, 8, 12]


def test_background_box_is_the_least_overlapping_neighbour():
    from tracking.boxes import background_box

    def overlap(a, b):
        return max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])) * \
            max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))

    # a centred box in a 4:3 frame has no free neighbour: left and right both overlap 20 x 120 px, left comes first
    assert background_box((100.0, 60.0, 120.0, 120.0), 320, 240) == (0.0, 60.0, 120.0, 120.0)
    # near the left edge the right neighbour is free; in the corner of a wide frame the left one is
    assert background_box((10.0, 60.0, 120.0, 120.0), 320, 240) == (130.0, 60.0, 120.0, 120.0)
    assert background_box((150.0, 10.0, 60.0, 60.0), 320, 240) == (90.0, 10.0, 60.0, 60.0)
    # a tall frame: only vertical neighbours can be free
    assert background_box((20.0, 100.0, 100.0, 100.0), 140, 400) == (20.0, 0.0, 100.0, 100.0)
    rng = np.random.default_rng(0)
    for _ in range(200):  # against a brute-force scan of every in-frame position on the box's row and column
        w, h = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        side = float(rng.integers(10, min(w, h)))
        box = (float(rng.integers(0, w - side + 1)), float(rng.integers(0, h - side + 1)), side, side)
        got = background_box(box, w, h)
        assert 0 <= got[0] <= w - side and 0 <= got[1] <= h - side and got[2:] == (side, side)
        assert got[0] == box[0] or got[1] == box[1]  # shifted along one axis
        best = min(overlap(box, (x, box[1], side, side)) for x in range(0, int(w - side) + 1))
        best_v = min(overlap(box, (box[0], y, side, side)) for y in range(0, int(h - side) + 1))
        assert overlap(box, got) == min(best, best_v)


def test_context_box_widens_about_the_centre_and_shifts_into_the_frame():
    from tracking.boxes import context_box

    # context 1: the box itself, bit for bit
    assert context_box((100.0, 60.0, 120.0, 120.0), 1.0, 320, 240) == (100.0, 60.0, 120.0, 120.0)
    # room all round: 1.5 x 40 = 60 px about the centre (70, 70)
    assert context_box((50.0, 50.0, 40.0, 40.0), 1.5, 320, 240) == (40.0, 40.0, 60.0, 60.0)
    # at the left edge: 80 px about x = 30 would start at -10; shifted to 0, the object 10 px off centre
    assert context_box((10.0, 100.0, 40.0, 40.0), 2.0, 320, 240) == (0.0, 80.0, 80.0, 80.0)
    # bottom right corner: shifted up and left to end on the frame's last pixel
    assert context_box((270.0, 190.0, 40.0, 40.0), 2.0, 320, 240) == (240.0, 160.0, 80.0, 80.0)
    # wider than the frame's short side: the whole height, centred across as far as the frame allows
    assert context_box((100.0, 60.0, 120.0, 120.0), 3.0, 320, 240) == (40.0, 0.0, 240.0, 240.0)
    assert context_box((0.0, 60.0, 120.0, 120.0), 3.0, 320, 240) == (0.0, 0.0, 240.0, 240.0)
    rng = np.random.default_rng(1)
    for _ in range(300):  # against a scan for the in-frame window of that side whose centre is nearest the box's
        w, h = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        side = float(rng.integers(8, min(w, h) + 1))
        box = (float(rng.integers(0, w - side + 1)), float(rng.integers(0, h - side + 1)), side, side)
        context = float(rng.choice([1.0, 1.25, 1.5, 2.0, 3.5]))
        want_side = min(side * context, w, h)
        got = context_box(box, context, w, h)
        assert got[2] == got[3] == pytest.approx(want_side)
        centre = (box[0] + side / 2, box[1] + side / 2)
        for axis, extent in ((0, w), (1, h)):
            starts = np.linspace(0, extent - want_side, 2001)
            nearest = starts[np.argmin(np.abs(starts + want_side / 2 - centre[axis]))]
            assert got[axis] == pytest.approx(nearest, abs=(extent - want_side) / 2000 + 1e-9)
        assert 0 <= got[0] and got[0] + got[2] <= w + 1e-9 and 0 <= got[1] and got[1] + got[3] <= h + 1e-9


def test_a_video_where_no_track_starts_says_so_with_the_start_counts(demo_dir):
    """Motion passes at start frames but no box holds enough moving points: no track ever ran, so "every track was
    rejected ({})" said nothing; the reason is its own, with the start-frame rejection counts."""
    from tracking.video_miner import SkipVideo, mine_video
    from vidssl.video import open_video

    cfg = MineConfig(box_fraction=0.33, min_box_points=10_000)
    with open_video(demo_dir / "clip_00.mp4") as reader, pytest.raises(SkipVideo) as info:
        mine_video(reader, cfg)
    assert info.value.reason == "no_start"
    counts = dict(+info.value.result.starts_rejected)
    listed = ", ".join(f"{key} {n}" for key, n in counts.items())  # "no_box 5", not a dict's repr
    assert counts["no_box"] > 0 and f"(start frames rejected: {listed})" in info.value.detail
    assert info.value.result.tracks_started == 0


def test_pool_workers_leave_ctrl_c_to_the_main_process():
    import subprocess
    import sys

    code = ("import os, signal\nfrom tracking.runner import _init_worker\n_init_worker(os.getppid())\n"
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.parametrize("fraction, margin", [(0.5, 0.05), (0.9, 0.05), (0.3, 0.0), (0.5, 0.01)])
def test_every_start_box_is_inside_the_tracker_frame(fraction, margin):
    """A box starts only where the tracker sees it whole: on the frame shrunk by k (the last W % k columns and
    H % k rows dropped), rounded to tracker px as Track rounds it, it must not touch the border, which Track.step
    reads as leaving the frame. Boxes placed by the working frame's margin alone touched it at the right or bottom
    edge of frames such as 69x66 (box_fraction 0.9) or 341x330 (default), or anywhere with edge_margin 0; and
    where the margin had given way to a box of 0.9 of the frame (92x52: 47 px + 2 x 2 px, rounded up to 2 tracker
    px less than the frame). The side gives way only there: elsewhere it is box_fraction of the short side."""
    cfg = MineConfig(box_fraction=fraction, edge_margin=margin)
    for h, w in itertools.product((52, 57, 61, 64, 66, 97, 330, 338), (64, 69, 92, 121, 341, 600)):
        miner = _Miner(cfg, (h, w), [], 0, 100)
        k, side = miner.shrink, miner.side
        if fraction < 0.9:
            assert side == round(fraction * min(h, w)), (h, w)
        small_h, small_w = h // k, w // k  # what shrink() gives
        last_y, last_x = (n - side - miner.margin for n in miner.start_shape)
        for x, y in itertools.product(range(miner.margin, last_x + 1), range(miner.margin, last_y + 1)):
            sx, sy, sw, sh = (int(round(v / k)) for v in (x, y, side, side))  # Track.__init__'s rounding
            assert sx > 0 and sy > 0 and sx + sw < small_w and sy + sh < small_h, (h, w, x, y, k)


def test_the_last_start_box_survives_its_first_update():
    # box_fraction 0.9 on a 69x66 frame: the rightmost start box, fed the very frame it started on, ended at once as
    # left_frame (it touched the tracker frame's right border after rounding)
    cfg = MineConfig(box_fraction=0.9, edge_margin=0.05)
    h, w = 66, 69
    miner = _Miner(cfg, (h, w), [], 0, 100)
    frame = np.repeat(texture(np.random.default_rng(3), h, w)[..., None], 3, axis=2)
    small = shrink(frame, miner.shrink)
    bgr, gray = cv2.cvtColor(small, cv2.COLOR_RGB2BGR), cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    for x in (miner.margin, miner.start_shape[1] - miner.side - miner.margin):
        box = (float(x), float(miner.margin), float(miner.side), float(miner.side))
        track = Track(0, 0, box, 1.0, miner.scale, bgr, gray, frame, cfg)
        assert track.step(1, bgr, gray, frame).ended is None, x


def test_a_mined_part_of_short_shots_is_skipped_for_its_cuts_whatever_came_before_it():
    """The held-out tail (mine.time_range [0.8, 1]) of a video whose first 255 frames are one shot and whose tail
    is cut every 15 frames: no track fits a shot of the tail, but the long shot before it, never mined, made the
    reason "no_motion"."""
    from collections import Counter

    from tracking.video_miner import VideoResult, _why_empty

    cfg = MineConfig()
    result = VideoResult(frames=300, cuts=[255, 270, 285], starts_rejected=Counter(too_static=2, cut=1))
    reason, detail = _why_empty(result, cfg, first_frame=240)
    # its first shot began before the part: the frame before it (a start's motion) counts, 15 + 1
    assert reason == "cuts" and detail.startswith("3 shot cuts in 60 frames mined, the longest shot 16 frames")
    needed = cfg.track_length + 2
    for first_cut, reason in ((240 + needed - 1, "no_motion"), (240 + needed - 2, "cuts")):
        short = VideoResult(frames=300, cuts=[first_cut, 290], starts_rejected=Counter(too_static=2))
        assert _why_empty(short, cfg, first_frame=240)[0] == reason, first_cut
    assert _why_empty(result, cfg)[0] == "no_motion"  # the whole video mined: its first shot holds tracks
    # a cut before the mined part is not one of its shots: [240, 300) holds 60 frames of one shot
    assert _why_empty(VideoResult(frames=300, cuts=[30, 60, 90], starts_rejected=Counter(too_static=3)), cfg,
                      first_frame=240)[0] == "no_motion"


def test_taking_back_a_start_takes_back_only_what_it_counted(tmp_path):
    """A pool worker's start counts no death (its pool blames a dying worker itself) but marks the video as its
    run's; taking it back (Ctrl-C, a strict skip) deleted the death a --workers 1 run had counted before it."""
    from tracking.dataset import begin_attempt, read_attempt, undo_attempt

    source = {"size": 1, "mtime_ns": 2}
    (tmp_path / "done").mkdir()
    assert begin_attempt(tmp_path, "v", "died", source) == 1  # a --workers 1 run that died on the video
    assert begin_attempt(tmp_path, "v", "pool", source, counts=False) == 1
    undo_attempt(tmp_path, "v", "pool")
    assert read_attempt(tmp_path, "v")["attempts"] == 1
    assert begin_attempt(tmp_path, "v", "alone", source) == 2
    undo_attempt(tmp_path, "v", "alone")
    assert read_attempt(tmp_path, "v")["attempts"] == 1
    undo_attempt(tmp_path, "v", "someone else")  # not that run's start: left as it is
    assert read_attempt(tmp_path, "v")["attempts"] == 1
    assert begin_attempt(tmp_path, "w", "pool", source, counts=False) == 0
    undo_attempt(tmp_path, "w", "pool")
    assert read_attempt(tmp_path, "w") is None


def test_track_strips_sample_distinct_trackers():
    """show-pairs --tracks drew pairs, and one tracker yields a pair every mine.pair_stride frames: rows of one
    tracker's overlapping windows. Now one row per tracker (its middle window), as many as asked or there are."""
    from tracking.show import _sample_tracks

    records = [{"video_id": v, "track_id": t, "start_frame": s} for v in ("a", "b") for t in range(3)
               for s in range(0, 40, 2)]  # 6 trackers of 20 windows each
    for seed in range(5):
        rows = _sample_tracks(records, 4, seed)
        assert len({(r["video_id"], r["track_id"]) for r in rows}) == 4
        assert all(r["start_frame"] == 20 for r in rows)  # the middle of 0, 2, ..., 38
    assert len(_sample_tracks(records, 10, 0)) == 6


def test_the_config_names_every_motion_method_and_tracker_the_miner_has():
    """tracking/config.py lists the names without importing cv2; a name there that the miner lacks passed the config
    check and then skipped every video as an error (a KeyError in each worker)."""
    from tracking import config, motion, track

    assert set(config.MOTION_METHODS) == set(motion.CORRESPONDENCES)
    assert set(config.TRACKERS) == set(track.TRACKERS)


def test_a_video_whose_every_track_was_rejected_names_the_settings_behind_them():
    """"every track was rejected (appearance 39, tracker_failure 13)" named internal reasons and no setting, and
    the command's hint (add videos with moving objects) fitted trackers that had run on moving objects."""
    from collections import Counter

    from tracking import MineConfig
    from tracking.video_miner import VideoResult, _why_empty

    result = VideoResult(frames=150, starts_accepted=5, tracks_started=4,
                         tracks_rejected=Counter({"tracker_failure": 13, "appearance": 39, "left_frame": 2}))
    reason, detail = _why_empty(result, MineConfig())
    assert reason == "no_tracks"
    assert detail == ("every track was rejected (tracker_failure 13, appearance 39, left_frame 2); the settings "
                      "behind them: appearance: consecutive 16x16 thumbnails correlating under mine.min_patch_ncc, "
                      "tracker_failure: KCF's peak response under mine.kcf_detect_thresh")


def test_a_video_without_camera_fits_says_why_a_fit_fails():
    """Start frames without a camera fit were counted under all_motion and said nothing else: a video skipped for
    too few points followed (mine.motion_points) read as one whose everything moved."""
    from collections import Counter

    from tracking import MineConfig
    from tracking.video_miner import VideoResult, _why_empty

    reason, detail = _why_empty(VideoResult(frames=150, starts_rejected=Counter(no_camera_fit=5)), MineConfig())
    assert reason == "all_motion"
    assert detail == ("no usable start frame (no_camera_fit 5); no camera fit: fewer than 20 of the about "
                      "mine.motion_points=400 points followed were matched both ways between frames (blurred, dark "
                      "or textureless frames, or too few points followed)")
    # everything moving outvotes it: the detail is the counts alone
    reason, detail = _why_empty(VideoResult(frames=150, starts_rejected=Counter(no_camera_fit=2, too_moving=3)),
                                MineConfig())
    assert (reason, detail) == ("all_motion", "no usable start frame (no_camera_fit 2, too_moving 3)")


class _SizedReader:
    """A video's size alone: the too_small check runs before anything is decoded."""

    backend = "pyav"

    def __init__(self, width, height):
        self.width, self.height, self.path = width, height, Path("v.mp4")

    @property
    def num_frames(self):
        raise AssertionError("decoded")


def test_too_small_names_the_box_it_got_and_the_keys_that_change_it():
    """"a box of 0.5 x 24 working px is under mine.min_box_px=32" named neither the factor's key, nor the box's
    size, nor what to change."""
    from tracking.video_miner import SkipVideo, mine_video

    with pytest.raises(SkipVideo) as small:
        mine_video(_SizedReader(32, 24), MineConfig())  # analysed as it is: working_side does not help
    assert small.value.reason == "too_small"
    assert small.value.detail == ("32x24, analysed at 32x24: a box of mine.box_fraction=0.5 x 24 working px = 12 px "
                                  "is under mine.min_box_px=32; raise mine.box_fraction or lower mine.min_box_px")
    with pytest.raises(SkipVideo) as wide:  # 2000x120 shrunk to 600x36: 0.36 x 36 px
        mine_video(_SizedReader(2000, 120), MineConfig(box_fraction=0.36))
    assert wide.value.detail == ("2000x120, analysed at 600x36: a box of mine.box_fraction=0.36 x 36 working px = "
                                 "12.96 px is under mine.min_box_px=32; raise mine.box_fraction or lower "
                                 "mine.min_box_px, or raise mine.working_side=600 (the video is analysed shrunk to it)")
    # the fixes it names do fix it: the box of 0.5 x 120 px at working_side 2000, the 12 px box with min_box_px 12
    assert MineConfig(working_side=2000).box_fits(120) and MineConfig(min_box_px=12).box_fits(24)


def test_no_pair_s_hint_follows_the_skip_reasons():
    """With no pair mined, "Add videos with moving objects" was said of folders whose every video was too small,
    too short or no video at all: each reason present now brings its own fix, and only those."""
    from vidssl.commands.mine import no_pair_hint

    assert no_pair_hint({"too_small": ["a.mp4"]}) == ("For too_small, a larger box at working size: raise "
                                                      "mine.box_fraction (or mine.working_side where the skip says "
                                                      "the video was analysed shrunk), or lower mine.min_box_px")
    assert no_pair_hint({"too_short": ["a.mp4"]}).startswith("For too_short, a smaller mine.track_length")
    files = no_pair_hint({"not_a_video": ["a.txt.mp4"], "empty": ["b.mp4"], "corrupt": ["c.mp4"]})
    assert files.startswith("For empty, corrupt, not_a_video, the files themselves: each skip above says what is wrong")
    for hint in (no_pair_hint({"too_small": ["a"]}), no_pair_hint({"too_short": ["a"]}), files):
        assert "moving objects" not in hint and "min_moving_fraction" not in hint, hint
    both = no_pair_hint({"no_motion": ["a.mp4"], "too_small": ["b.mp4"], "no_tracks": ["c.mp4"]})
    assert both.startswith("Add videos with moving objects; for no_motion, --set mine.min_moving_fraction=0.05")
    assert "for no_tracks, each skip above names the settings" in both and "for too_small," in both
    assert no_pair_hint({"all_motion": ["a.mp4"]}) == "Add videos with moving objects"
    assert no_pair_hint({"duplicate": ["a.mp4"]}) == "Each skip above says why its video gave none"
    # an error is an exception or a crash, not a file to copy again
    assert no_pair_hint({"error": ["a.mp4"]}) == ("For error, each skip above gives the exception or the crash; "
                                                  "please report it with the video")
