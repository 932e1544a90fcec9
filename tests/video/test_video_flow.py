"""Optical flow against a clip of known motion, the forward-backward check, warping, the
temporal prior and the long-term weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artconv.video.flow import FlowEstimator, long_term_weights, warp
from artconv.video.temporal import TemporalPrior, pixel_weight
from tests.video.clips import frames, true_backward

HW = (48, 64)


@pytest.mark.parametrize("pan, zoom", [(3.0, 1.0), (2.0, 1.03)], ids=["pan", "pan+zoom"])
def test_dis_flow_matches_the_known_motion(pan, zoom):
    clip = frames(3, HW, pan=pan, zoom=zoom)
    pair = FlowEstimator("dis").pair(clip[1], clip[2])
    truth = true_backward(1, pan, zoom, HW)
    visible = pair.weights() > 0
    error = np.sqrt(((pair.backward - truth) ** 2).sum(-1))
    assert visible.mean() > 0.8
    assert error[visible].mean() < 0.3, error[visible].mean()  # px; the motion is 2-3 px
    # the forward flow points the other way
    assert np.median(pair.forward[..., 0]) == pytest.approx(-np.median(truth[..., 0]), abs=0.3)


def test_forward_backward_check_marks_the_pixels_that_enter_the_frame():
    clip = frames(2, HW, pan=4.0)
    c = FlowEstimator().pair(clip[0], clip[1]).weights()
    # the camera pans right: the last 4 columns of frame 1 were not in frame 0
    assert c[:, -3:].mean() < 0.2
    assert c[4:-4, 4:-8].mean() > 0.95


def test_warping_the_previous_frame_by_the_flow_gives_the_next():
    clip = frames(2, HW, pan=3.0, zoom=1.02)
    pair = FlowEstimator().pair(clip[0], clip[1])
    earlier = torch.from_numpy(clip[0]).permute(2, 0, 1)[None].float()
    moved = warp(earlier, pair.backward)[0].permute(1, 2, 0).numpy()
    c = pair.weights() > 0
    later = clip[1].astype(np.float32)
    assert np.abs(moved - later)[c].mean() < 0.25 * np.abs(clip[0] - later)[c].mean()


def test_long_term_weights_give_each_pixel_to_the_nearest_frame_that_sees_it():
    near = np.array([[1, 0, 0]], np.float32)
    mid = np.array([[1, 1, 0]], np.float32)
    far = np.array([[1, 1, 1]], np.float32)
    got = long_term_weights([near, mid, far])
    assert [g.tolist() for g in got] == [[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]]


def test_temporal_prior_is_the_masked_mean_square_at_any_size():
    ref = torch.zeros(1, 3, 8, 8)
    c = torch.ones(1, 1, 8, 8)
    c[..., :4] = 0
    prior = TemporalPrior(ref, c, weight=2.0)
    x = torch.full((2, 3, 8, 8), 0.5)
    assert prior(x).tolist() == pytest.approx([2.0 * 0.25 / 2] * 2)
    assert prior(torch.full((1, 3, 4, 4), 0.5)).shape == (1,)  # resized to a coarse scale
    assert prior(torch.full((1, 1, 8, 8), 0.5)).item() == pytest.approx(0.25)  # luminance
    assert pixel_weight(200, 0.015, "torchvision") == pytest.approx(200 * 0.015 / 0.226 ** 2)
