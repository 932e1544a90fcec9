"""TransformerNet: any size in, the same size out, in [0, 1], with pytorch/examples' names."""

from __future__ import annotations

import pytest
import torch

from artconv.fast.net import TransformerNet


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (30, 61), (17, 18)])
def test_any_size_comes_back_the_same_size_in_range(size):
    torch.manual_seed(0)
    net = TransformerNet(width=4, blocks=1).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    assert y.std() > 0  # not collapsed to a constant by the clamp


def test_parameter_names_are_pytorch_examples_layout():
    names = set(TransformerNet(width=32, blocks=5).state_dict())
    for key in ("conv1.conv2d.weight", "in1.weight", "in1.bias", "conv2.conv2d.bias", "in2.weight",
                "conv3.conv2d.weight", "in3.bias", "res1.conv1.conv2d.weight", "res1.in1.weight",
                "res5.conv2.conv2d.bias", "res5.in2.bias", "deconv1.conv2d.weight", "in4.weight",
                "deconv2.conv2d.weight", "in5.bias", "deconv3.conv2d.weight"):
        assert key in names
    assert not any("running" in k for k in names)  # instance norms keep no running stats
    net = TransformerNet(width=32, blocks=5)
    assert net.conv1.conv2d.weight.shape == (32, 3, 9, 9)
    assert net.res3.conv1.conv2d.weight.shape == (128, 128, 3, 3)
    assert net.deconv3.conv2d.weight.shape == (3, 32, 9, 9)
    assert sum(p.numel() for p in net.parameters()) == 1_679_235  # the published count


def test_scale_is_applied_in_and_out():
    """A 0-255 net (pytorch/examples) and a [0, 1] net with the same weights agree once the
    first conv's bias and the last conv carry the 255."""
    torch.manual_seed(1)
    unit = TransformerNet(width=4, blocks=1).eval()
    big = TransformerNet(width=4, blocks=1, scale=255).eval()
    state = unit.state_dict()
    state["conv1.conv2d.bias"] = state["conv1.conv2d.bias"] * 255  # in1 is scale invariant
    state["deconv3.conv2d.weight"] = state["deconv3.conv2d.weight"] * 255
    state["deconv3.conv2d.bias"] = state["deconv3.conv2d.bias"] * 255
    big.load_state_dict(state)
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(big(x, clamp=False), unit(x, clamp=False), rtol=1e-4, atol=1e-4)
