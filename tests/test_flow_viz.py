"""Flow colour coding: the Middlebury wheel's fixed points."""
from __future__ import annotations

import numpy as np

from vidssl.eval.flow.viz import flow_to_color, pair_figure


def test_colour_wheel_fixed_points():
    flow = np.array([[[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [2.0, 0.0], [-1.0, 0.0]]], np.float32)
    rgb = flow_to_color(flow, max_radius=1.0)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # no motion is white
    assert rgb[0, 1].tolist() == [255, 0, 0]  # rightwards is red
    assert rgb[0, 2].tolist() == [255, 128, 128]  # half the radius: halfway to white
    assert rgb[0, 3].tolist() == [191, 0, 0]  # beyond the radius: saturated, darkened to 3/4
    left = rgb[0, 4].astype(int)
    assert left[2] > 200 and left[0] == 0  # leftwards is on the cyan-blue side, opposite red


def test_figure_has_a_panel_per_method_on_the_ground_truth_scale():
    gt = np.zeros((20, 40, 2), np.float32)
    gt[..., 0] = 4.0
    valid = np.ones((20, 40), bool)
    valid[0] = False
    frame = np.zeros((20, 40, 3), np.uint8)
    figure = pair_figure(frame, gt, valid, {"a": (gt * 0.5, 2.0), "b": (gt, 0.0)}, columns=2, panel_width=80)
    assert figure.shape == (2 * (22 + 40), 2 * 80, 3)  # 4 panels in 2 columns, each a title bar over the image
    method_b = figure[22 + 40 + 22 + 10, 80 + 40]  # an inner pixel of panel 4
    assert method_b.tolist() == [255, 0, 0]  # same scale as the GT: full-length rightwards flow is fully red
    gt_panel = figure[22:22 + 40, 80:]
    assert gt_panel[0].max() == 0  # invalid ground truth is drawn black
