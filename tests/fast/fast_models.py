"""Tiny trained-network files for tests: random weights, seeded, made on the fly."""

from __future__ import annotations

from pathlib import Path

import torch

from artconv.fast.model import save_model
from artconv.fast.net import TransformerNet


def tiny_net(width: int = 4, blocks: int = 1, seed: int = 0) -> TransformerNet:
    """A small TransformerNet whose instance norms have non-trivial affine parameters (fresh
    ones are 1 and 0, which would hide a norm applied wrongly)."""
    gen = torch.Generator().manual_seed(seed)
    net = TransformerNet(width=width, blocks=blocks)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
        net.deconv3.conv2d.bias.fill_(0.5)  # outputs around mid-grey, not all clamped
    return net.eval()


def tiny_model(path: Path, width: int = 4, blocks: int = 1, seed: int = 0) -> Path:
    """`path` holding a tiny model (made once per path)."""
    if not path.is_file():
        save_model(path, tiny_net(width, blocks, seed), {"engine": "train", "seed": seed})
    return path
