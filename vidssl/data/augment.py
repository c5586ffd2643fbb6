"""Light augmentation of a positive pair: a random square crop and a horizontal flip, drawn per patch."""
from __future__ import annotations

import cv2
import numpy as np


def augment_patch(patch: np.ndarray, rng: np.random.Generator, size: int, crop_min: float, flip: bool) -> np.ndarray:
    """[S0, S0, 3] uint8 -> [size, size, 3] uint8: crop a square of side in [crop_min, 1] x S0, flip, resize."""
    s0 = patch.shape[0]
    side = max(1, int(round(s0 * rng.uniform(crop_min, 1.0))))
    y, x = rng.integers(0, s0 - side + 1, size=2)
    out = patch[y:y + side, x:x + side]
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if side != size:
        # INTER_AREA averages when shrinking (no aliasing of the texture); linear when growing
        out = cv2.resize(np.ascontiguousarray(out), (size, size),
                         interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out)


def augment_pair(pair: np.ndarray, rng: np.random.Generator, size: int, crop_min: float, flip: bool) -> np.ndarray:
    """[M, S0, S0, 3] uint8 -> [M, size, size, 3] uint8, each patch augmented independently."""
    return np.stack([augment_patch(p, rng, size, crop_min, flip) for p in pair])
