"""Light augmentation of a positive pair: a random square crop and a horizontal flip, drawn per patch; with
``box_view``, the crop is taken from the tracked box inside a wider stored window instead of the whole window."""
from __future__ import annotations

import cv2
import numpy as np


def augment_patch(patch: np.ndarray, rng: np.random.Generator, size: int, crop_min: float, flip: bool,
                  region: tuple[int, int, int] | None = None) -> np.ndarray:
    """[S0, S0, 3] uint8 -> [size, size, 3] uint8: crop a square of side in [crop_min, 1] x the square ``region``
    (x, y, side in px; default the whole patch) from inside it, flip, resize."""
    x0, y0, extent = (0, 0, patch.shape[0]) if region is None else region
    side = max(1, int(round(extent * rng.uniform(crop_min, 1.0))))
    y, x = rng.integers(0, extent - side + 1, size=2)
    out = patch[y0 + y:y0 + y + side, x0 + x:x0 + x + side]
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if side != size:
        # INTER_AREA averages when shrinking (no aliasing of the texture); linear when growing
        out = cv2.resize(np.ascontiguousarray(out), (size, size),
                         interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out)


def box_region(box: np.ndarray, side: int) -> tuple[int, int, int] | None:
    """The square (x, y, side px) of a ``side`` px patch that its tracked ``box`` ([x, y, w, h] fractions of the
    patch side, as mining records it) covers: its shorter side, about its centre, kept inside the patch. None for a
    box not recorded (NaN)."""
    if not np.isfinite(box).all():
        return None
    x, y, w, h = (float(v) * side for v in box)
    extent = max(1, min(side, int(round(min(w, h)))))
    left = min(max(int(round(x + (w - extent) / 2)), 0), side - extent)
    top = min(max(int(round(y + (h - extent) / 2)), 0), side - extent)
    return left, top, extent


def augment_pair(pair: np.ndarray, rng: np.random.Generator, size: int, crop_min: float, flip: bool,
                 boxes: np.ndarray | None = None, box_view: float = 0.0) -> np.ndarray:
    """[M, S0, S0, 3] uint8 -> [M, size, size, 3] uint8, each patch augmented independently. ``boxes``: [2, 4] the
    first and last patch's tracked box (fractions); each of the two is cropped from its box with chance
    ``box_view`` (the background, a third patch, never: it has no tracked box). Without ``box_view`` the draws
    are those of a plain crop and flip, the same numbers as before the option existed."""
    out = []
    for k, patch in enumerate(pair):
        region = None
        if box_view > 0 and boxes is not None and k < len(boxes) and rng.random() < box_view:
            region = box_region(boxes[k], patch.shape[0])
        out.append(augment_patch(patch, rng, size, crop_min, flip, region))
    return np.stack(out)
