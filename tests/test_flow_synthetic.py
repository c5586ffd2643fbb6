"""The synthetic pair generator: exact ground truth, checked by warping frame 2 back onto frame 1."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vidssl.eval.flow.synthetic import synthetic_pairs


def backward_warp(image2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image2 [B, 3, H, W] sampled bilinearly at x + flow(x), pixel centres at integer coordinates."""
    b, _, h, w = image2.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[:, 0] + 0.5) / w * 2 - 1
    gy = (ys + flow[:, 1] + 0.5) / h * 2 - 1
    return F.grid_sample(image2, torch.stack([gx, gy], -1), mode="bilinear", align_corners=False)


def test_shapes_ranges_and_determinism():
    a = synthetic_pairs(3, 48, 64, torch.Generator().manual_seed(5), max_motion=10.0)
    b = synthetic_pairs(3, 48, 64, torch.Generator().manual_seed(5), max_motion=10.0)
    c = synthetic_pairs(3, 48, 64, torch.Generator().manual_seed(6), max_motion=10.0)
    assert a.image1.shape == a.image2.shape == (3, 3, 48, 64) and a.flow.shape == (3, 2, 48, 64)
    assert a.occluded.shape == (3, 48, 64) and a.occluded.dtype == torch.bool
    assert 0 <= float(a.image1.min()) and float(a.image1.max()) <= 1
    for x, y in ((a.image1, b.image1), (a.image2, b.image2), (a.flow, b.flow), (a.occluded, b.occluded)):
        assert torch.equal(x, y)
    assert not torch.equal(a.flow, c.flow)
    # translation <= 10 px per axis, rotation <= 10 deg and scale <= 10% about a centre at most ~60 px away
    assert float(a.flow.abs().max()) < 10 + 0.28 * 80


def test_backward_warp_with_the_ground_truth_reproduces_frame_1_on_visible_pixels():
    batch = synthetic_pairs(6, 96, 128, torch.Generator().manual_seed(0), max_motion=20.0)
    error = (backward_warp(batch.image2, batch.flow) - batch.image1).abs().mean(1)  # [B, H, W]
    still = (batch.image2 - batch.image1).abs().mean(1)
    visible = ~batch.occluded
    assert 0.02 < float(batch.occluded.float().mean()) < 0.6
    assert float(still[visible].mean()) > 0.05  # the frames really differ
    # only bilinear resampling separates the two: tiny on average, larger at hard layer edges
    assert float(error[visible].mean()) < 0.015
    assert float(error[visible].median()) < 0.004
    # the ground truth is the best warp: a bias of a quarter pixel or a 2% scale error anywhere would show here
    for wrong in (batch.flow + torch.tensor([0.25, 0.0]).view(1, 2, 1, 1),
                  batch.flow - torch.tensor([0.25, 0.0]).view(1, 2, 1, 1),
                  batch.flow + torch.tensor([0.0, 0.25]).view(1, 2, 1, 1),
                  batch.flow - torch.tensor([0.0, 0.25]).view(1, 2, 1, 1), batch.flow * 1.02, batch.flow * 0.98):
        worse = (backward_warp(batch.image2, wrong) - batch.image1).abs().mean(1)
        assert float(error[visible].mean()) < 0.8 * float(worse[visible].mean())
    # and the occlusion mask is informative: warping fails where it says frame-1 content is hidden
    assert float(error[batch.occluded].mean()) > 5 * float(error[visible].mean())


def test_a_scene_without_shapes_moves_rigidly():
    batch = synthetic_pairs(2, 40, 56, torch.Generator().manual_seed(1), max_motion=8.0, num_shapes=(0, 0))
    # one affine layer: the flow is an affine function of (x, y); its second differences vanish
    flow = batch.flow.double()
    assert float((flow[..., :, 2:] - 2 * flow[..., :, 1:-1] + flow[..., :, :-2]).abs().max()) < 1e-3
    assert float((flow[..., 2:, :] - 2 * flow[..., 1:-1, :] + flow[..., :-2, :]).abs().max()) < 1e-3
    error = (backward_warp(batch.image2, batch.flow) - batch.image1).abs().mean(1)
    assert float(error[~batch.occluded].mean()) < 0.01


def test_the_background_moves_half_as_far_as_the_shapes():
    """Documented (synthetic_pairs, eval.flow.max_motion) as translating by half of max_motion per axis, rotating by
    up to 2 degrees and scaling by up to 3% about the frame's centre: a background moving the full max_motion
    passed every test. Bound, per axis: max_motion / 2 plus ||s R(theta) - I|| times the farthest pixel's distance
    from the centre, whose largest value over |theta| <= 2 deg, |s - 1| <= 0.03 is at a corner of that box."""
    height, width, max_motion = 40, 56, 40.0
    batch = synthetic_pairs(8, height, width, torch.Generator().manual_seed(2), max_motion=max_motion,
                            num_shapes=(0, 0))
    theta = math.radians(2)
    turn = max(math.sqrt(s * s - 2 * s * math.cos(theta) + 1) for s in (0.97, 1.03))  # ||s R - I||, 2x2 spectral
    radius = math.hypot((width - 1) / 2, (height - 1) / 2)
    bound = max_motion / 2 + turn * radius  # 20 + 1.6 px
    per_axis = batch.flow.abs().amax(dim=(2, 3))  # [B, 2]
    assert float(per_axis.max()) <= bound
    assert float(per_axis.max()) > 0.6 * max_motion / 2  # and it does move: the bound is not met by standing still
