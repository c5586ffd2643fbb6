"""Where tracks start: the box positions holding the most moving points, found with an integral image."""
from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]  # x, y, w, h in working pixels

STRIDE = 4  # px between candidate box positions: finer changes the count by a point or two, at 16x the cost


def select_boxes(points: np.ndarray, moving: np.ndarray, shape: tuple[int, int], side: int, k: int, margin: int,
                 min_points: int, avoid: list[Box] = ()) -> list[tuple[Box, int]]:
    """Up to ``k`` non-overlapping ``side`` x ``side`` boxes, greedily by the number of moving points inside.

    points: (N, 2) x, y of all analysed points (working px); moving: (N,) bool; shape: (H, W) of the frame. A box
    lies at least ``margin`` px inside the frame, holds at least ``min_points`` moving points, and overlaps neither
    the other boxes nor any box in ``avoid`` (boxes of running tracks). Points within half a box of a box in
    ``avoid`` or of an already chosen box are not counted: what sticks out of it is most likely the same object.
    Ties go to the position centred nearest the centroid of the points they hold (an object smaller than the box is
    then centred in it, not pushed into a corner), then to the first in row-major order. Returns
    ``[((x, y, side, side), moving count), ...]`` by decreasing count.
    """
    h, w = shape
    xs = np.arange(margin, w - side - margin + 1, STRIDE)
    ys = np.arange(margin, h - side - margin + 1, STRIDE)
    if len(xs) == 0 or len(ys) == 0 or not moving.any():
        return []
    def near(box: Box) -> np.ndarray:
        bx, by, bw, bh = box
        return ((points[:, 0] >= bx - bw / 2) & (points[:, 0] < bx + 1.5 * bw)
                & (points[:, 1] >= by - bh / 2) & (points[:, 1] < by + 1.5 * bh))

    keep = moving.copy()
    for box in avoid:
        keep &= ~near(box)
    free = np.ones((len(ys), len(xs)), bool)
    y0, x0 = ys[:, None], xs[None, :]
    for box in avoid:
        free &= ~_overlaps(y0, x0, side, box)
    chosen: list[tuple[Box, int]] = []
    counted = _pixels(points, shape)  # a point LK followed out of the frame counts at the edge, in both steps below
    while len(chosen) < k:
        inside = _window_counts(counted[keep], shape, xs, ys, side)
        scores = np.where(free & (inside >= min_points), inside, -1)
        best = int(np.argmax(scores))
        count = int(scores.flat[best])
        if count < 0:
            break
        by, bx = _centred(scores, count, counted[keep], xs, ys, *np.unravel_index(best, scores.shape), side)
        box = (float(xs[bx]), float(ys[by]), float(side), float(side))
        chosen.append((box, count))
        free &= ~_overlaps(y0, x0, side, box)
        keep &= ~near(box)  # like a running track's, a chosen box's surroundings are most likely its own object
    return chosen


def background_box(box: Box, width: int, height: int) -> Box:
    """The box of ``box``'s size beside it in a ``width`` x ``height`` frame: ``box`` shifted left, right, up or
    down by its own side, clamped into the frame, whichever overlaps ``box`` least (ties in that order).

    The background a tracked object must be told apart from is the scene right next to it; a box half the frame's
    short side seldom has a non-overlapping neighbour, so the least overlapping one is taken.
    """
    x, y, w, h = box
    shifts = ((max(0.0, x - w), y), (min(width - w, x + w), y), (x, max(0.0, y - h)), (x, min(height - h, y + h)))

    def overlap(pos: tuple[float, float]) -> float:
        return max(0.0, w - abs(pos[0] - x)) * max(0.0, h - abs(pos[1] - y))

    bx, by = min(shifts, key=overlap)
    return (float(bx), float(by), float(w), float(h))


def context_box(box: Box, context: float, width: int, height: int) -> Box:
    """The square window a patch of ``box`` is cut from: ``context`` x its longer side, centred on it, no wider than
    the ``width`` x ``height`` frame's short side, shifted into the frame where it would leave it.

    A tracked box fills its patch with the object; a wider view keeps some of what surrounds it, as the dense
    features of label propagation see an object within its scene. Shifting rather than padding keeps every pixel a
    real one: the object then sits off centre by the shift. ``context`` 1 gives ``box`` itself (for a square box
    inside the frame).
    """
    x, y, w, h = box
    side = min(max(w, h) * context, float(width), float(height))
    left = min(max(x + (w - side) / 2, 0.0), width - side)
    top = min(max(y + (h - side) / 2, 0.0), height - side)
    return (float(left), float(top), float(side), float(side))


def _pixels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) int64 pixel x, y of ``points`` (float x, y), clipped into a frame of ``shape`` (H, W)."""
    h, w = shape
    return np.stack([np.clip(points[:, 0].astype(np.int64), 0, w - 1),
                     np.clip(points[:, 1].astype(np.int64), 0, h - 1)], 1)


def _centred(scores: np.ndarray, count: int, points: np.ndarray, xs: np.ndarray, ys: np.ndarray, by: int,
             bx: int, side: int) -> tuple[int, int]:
    """Among the positions scoring ``count`` (the first is (by, bx)), the one centred nearest the centroid of the
    points inside the first (``points``: pixel x, y, as :func:`_pixels` gives them)."""
    x0, y0 = xs[bx], ys[by]
    p = points
    p = p[(p[:, 0] >= x0) & (p[:, 0] < x0 + side) & (p[:, 1] >= y0) & (p[:, 1] < y0 + side)]
    cx, cy = p[:, 0].mean(), p[:, 1].mean()
    rows, cols = np.nonzero(scores == count)
    dist = (xs[cols] + side / 2 - cx) ** 2 + (ys[rows] + side / 2 - cy) ** 2
    i = int(np.argmin(dist))  # ties: the first in row-major order, as np.nonzero lists them
    return int(rows[i]), int(cols[i])


def _window_counts(points: np.ndarray, shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray,
                   side: int) -> np.ndarray:
    """(len(ys), len(xs)) number of ``points`` in the box of size ``side`` at each top-left (ys[i], xs[j])."""
    h, w = shape
    counts = np.zeros((h + 1, w + 1), np.int32)
    px, py = _pixels(points, shape).T
    np.add.at(counts, (py + 1, px + 1), 1)
    integral = counts.cumsum(0).cumsum(1)  # integral[y, x] = points with row < y and column < x
    y0, x0 = ys[:, None], xs[None, :]
    return integral[y0 + side, x0 + side] - integral[y0, x0 + side] - integral[y0 + side, x0] + integral[y0, x0]


def _overlaps(y0: np.ndarray, x0: np.ndarray, side: int, box: Box) -> np.ndarray:
    """Which candidate boxes (top-left y0 x x0 grid, size ``side``) intersect ``box``."""
    bx, by, bw, bh = box
    return (x0 < bx + bw) & (bx < x0 + side) & (y0 < by + bh) & (by < y0 + side)
