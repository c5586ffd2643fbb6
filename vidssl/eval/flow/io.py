"""Optical-flow file formats and frames: Middlebury ``.flo``, KITTI 16-bit PNG flow, 8/16-bit colour or grey images.

Flow arrays are float32 ``[H, W, 2]`` in pixels, channel 0 = u (rightwards), channel 1 = v (downwards): the
position in frame 2 of frame-1 pixel (x, y) is (x + u, y + v).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from vidssl.errors import VidsslError
from vidssl.io import atomic_write_bytes

log = logging.getLogger(__name__)

FLO_MAGIC = np.float32(202021.25)  # "PIEH" in little-endian bytes
FLO_UNKNOWN = 1e9  # Middlebury convention: components above this mark pixels without ground truth
_FLO_HEADER = 12
_MAX_SIDE = 1 << 16  # a larger side is a corrupt header, not an image


class FlowFileError(VidsslError):
    """A flow, frame or mask file that cannot be read; the message names the file and what is wrong."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# ----------------------------------------------------------------------------------------------------------------
# Middlebury .flo


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """A ``.flo`` file -> float32 [H, W, 2], unknown values (> 1e9) kept as stored (see :func:`known_flow`).

    Validates the magic number and that width and height match the file length exactly.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FlowFileError(path, f"cannot read ({e.strerror or e})") from None
    if len(data) < _FLO_HEADER:
        raise FlowFileError(path, f"not a .flo file: {len(data)} bytes, shorter than the 12-byte header")
    magic = np.frombuffer(data, "<f4", 1, 0)[0]
    if magic != FLO_MAGIC:
        # exact, not :g, which printed 202021.0 as "202021" beside an expected "202021"
        raise FlowFileError(path, f"not a .flo file: it starts with {data[:4]!r} (magic number {float(magic)!r}), "
                                  f"expected b'PIEH' ({float(FLO_MAGIC)!r}); Middlebury format: 'PIEH', int32 width, "
                                  "int32 height, float32 u,v per pixel")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, 4))
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise FlowFileError(path, f"corrupt .flo header: width {width}, height {height}")
    expected = _FLO_HEADER + 8 * width * height
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "size mismatch"
        raise FlowFileError(path, f"{kind}: header says {width}x{height}, which needs {expected} bytes, "
                                  f"but the file has {len(data)}; re-export or re-download it")
    return np.frombuffer(data, "<f4", 2 * width * height, _FLO_HEADER).reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """float [H, W, 2] -> ``.flo`` file, written atomically."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or min(flow.shape[:2]) < 1:
        raise ValueError(f"flow must be [H, W, 2], got shape {flow.shape}")
    height, width = flow.shape[:2]
    header = FLO_MAGIC.astype("<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    atomic_write_bytes(path, header + flow.astype("<f4").tobytes())


def known_flow(flow: np.ndarray) -> np.ndarray:
    """[H, W, 2] -> [H, W] bool: finite and both components within the 1e9 "unknown" threshold."""
    return np.isfinite(flow).all(axis=2) & (np.abs(flow) <= FLO_UNKNOWN).all(axis=2)


# ----------------------------------------------------------------------------------------------------------------
# KITTI 16-bit PNG flow: R = u * 64 + 2**15, G = v * 64 + 2**15, B = valid (0/1)


def read_kitti_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI flow PNG -> (float32 [H, W, 2], bool [H, W] valid)."""
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FlowFileError(path, "cannot read as a PNG image (missing, unreadable or corrupt)")
    if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] != 3:
        raise FlowFileError(path, f"not a KITTI flow PNG: expected 16-bit 3-channel, got {raw.dtype} "
                                  f"with shape {raw.shape}")
    bgr = raw.astype(np.float32)
    flow = (bgr[:, :, [2, 1]] - 2.0 ** 15) / 64.0  # OpenCV gives BGR: R holds u, G holds v
    valid = raw[:, :, 0] > 0
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: str | os.PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """float [H, W, 2] (+ bool valid, default :func:`known_flow`) -> KITTI 16-bit PNG, written atomically. Values
    are quantised to 1/64 px.

    The format holds -512 to +511.98 px per component: a pixel outside that range (or non-finite) is written as
    invalid, with a warning counting them, rather than clipped and kept valid (u = 600 read back as a valid 511.98)
    or refused (one wild pixel of a method's prediction would lose the whole file)."""
    flow = np.asarray(flow, np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got shape {flow.shape}")
    valid = known_flow(flow) if valid is None else np.asarray(valid, bool)
    with np.errstate(invalid="ignore"):
        coded = np.round(flow * 64.0 + 2.0 ** 15)
        fits = ((coded >= 0) & (coded <= 2 ** 16 - 1)).all(axis=2)  # NaN compares False: not representable
    if (valid & ~fits).any():
        log.warning("%s: %d pixel(s) with flow beyond the KITTI format's -512..511.98 px (or not finite) written as "
                    "invalid", path, int((valid & ~fits).sum()))
    valid = valid & fits
    coded = np.where(fits[:, :, None], coded, 2.0 ** 15).astype(np.uint16)  # what does not fit: zero flow
    bgr = np.dstack([valid.astype(np.uint16), coded[:, :, 1], coded[:, :, 0]])
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {flow.shape} flow as PNG")
    atomic_write_bytes(path, buf.tobytes())


# ----------------------------------------------------------------------------------------------------------------
# frames and masks


def truncated_jpeg(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a JPEG cut short (a half-finished download or copy). OpenCV decodes one anyway, the
    missing rows flat grey, saying so only on stderr; Pillow's decoder raises. Decoded at 1/8 scale (JPEG's DCT
    scaling), so the check costs a fraction of the real decode; the end-of-image marker is no test, as phones
    append data after it (motion photos)."""
    with open(path, "rb") as fh:
        if fh.read(3) != b"\xff\xd8\xff":
            return False
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Image.DecompressionBombError:  # over Pillow's pixel limit: OpenCV decoded it; nothing to tell
        return False
    except (OSError, SyntaxError, ValueError):  # Pillow: "image file is truncated", broken data stream
        return True
    return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any 8/16-bit grey, RGB or RGBA image -> uint8 RGB [H, W, 3] (grey is replicated to three channels)."""
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FlowFileError(path, "cannot read as an image (missing, unreadable or not an image)")
    if truncated_jpeg(path):  # else scored against ground truth with its lower rows flat grey
        raise FlowFileError(path, "JPEG data cut short; replace the file")
    if raw.dtype == np.uint16:
        raw = (raw.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise FlowFileError(path, f"unsupported image type {raw.dtype}; expected 8- or 16-bit")
    if raw.ndim == 2:
        return np.repeat(raw[:, :, None], 3, axis=2)
    if raw.shape[2] == 1:
        return np.repeat(raw, 3, axis=2)
    return cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A 0/255 (or 0/1) mask image -> bool [H, W]; any colour channel non-zero counts as set (not alpha: an
    opaque alpha channel would set every pixel)."""
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FlowFileError(path, "cannot read as a mask image (missing, unreadable or not an image)")
    return raw > 0 if raw.ndim == 2 else (raw[:, :, :3] > 0).any(axis=2)
