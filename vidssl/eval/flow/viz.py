"""Pictures of flow: the Middlebury colour wheel on one scale for every panel of a figure.

torchvision's ``flow_to_image`` normalises each flow by its own largest vector, so a near-zero prediction would look
as saturated as the ground truth; the panels of a figure here share the ground truth's scale instead.
"""
from __future__ import annotations

import cv2
import numpy as np

from vidssl.io import drawable

# hue segments of the Middlebury colour wheel (Baker et al. 2011): red-yellow, yellow-green, green-cyan,
# cyan-blue, blue-magenta, magenta-red, with these many steps each
_SEGMENTS = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
             (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))


def _wheel() -> np.ndarray:
    """[55, 3] float RGB in [0, 1] going round the hue circle."""
    parts = [np.linspace(a, b, n, endpoint=False) for n, a, b in _SEGMENTS]
    return np.concatenate(parts).astype(np.float64) / 255.0


def flow_to_color(flow: np.ndarray, max_radius: float | None = None) -> np.ndarray:
    """float [H, W, 2] -> uint8 RGB [H, W, 3]: hue = direction, saturation = magnitude / max_radius (white = still).

    ``max_radius`` defaults to the flow's own largest magnitude; longer vectors are drawn saturated and darkened.
    """
    flow = np.nan_to_num(np.asarray(flow, np.float64))
    radius = np.sqrt((flow ** 2).sum(axis=2))
    scale = max_radius if max_radius is not None else radius.max()
    rad = radius / max(scale, 1e-9)
    wheel = _wheel()
    n = len(wheel)
    angle = np.arctan2(-flow[..., 1], -flow[..., 0]) / np.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(position).astype(int) % n
    k1 = (k0 + 1) % n
    frac = (position - np.floor(position))[..., None]
    colour = (1.0 - frac) * wheel[k0] + frac * wheel[k1]
    inside = (rad <= 1.0)[..., None]
    colour = np.where(inside, 1.0 - np.minimum(rad, 1.0)[..., None] * (1.0 - colour), colour * 0.75)
    return np.round(colour * 255.0).astype(np.uint8)


def _panel(image: np.ndarray, title: str, width: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> resized to ``width`` with a title bar above."""
    h = max(1, round(image.shape[0] * width / image.shape[1]))
    body = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
    bar = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(bar, drawable(title), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, body])


def pair_figure(image1: np.ndarray, gt: np.ndarray, valid: np.ndarray, predictions: dict[str, tuple[np.ndarray, float]],
                columns: int = 3, panel_width: int = 512) -> np.ndarray:
    """uint8 RGB grid: frame 1, the ground truth (invalid pixels black), then each method's flow titled with its EPE."""
    scale = float(np.sqrt((gt[valid] ** 2).sum(axis=1)).max()) if valid.any() else 1.0
    gt_image = flow_to_color(gt, scale)
    gt_image[~valid] = 0
    panels = [_panel(image1, "frame 1", panel_width),
              _panel(gt_image, f"ground truth (max {scale:.1f} px)", panel_width)]
    panels += [_panel(flow_to_color(flow, scale), f"{name}: EPE {epe:.2f}", panel_width)
               for name, (flow, epe) in predictions.items()]
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (-len(panels) % columns)
    rows = [np.hstack(panels[i:i + columns]) for i in range(0, len(panels), columns)]
    return np.vstack(rows)
