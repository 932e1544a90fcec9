"""RAFT flow: the weights come through the same cache and offline message as VGG's."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.video.flow import FlowEstimator
from tests.video.clips import frames


def test_raft_without_cached_weights_offline_says_where_to_put_them(monkeypatch):
    def offline(url, dst, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    clip = frames(2, (32, 40))
    with pytest.raises(ArtconvError, match="RAFT optical flow weights are not cached"):
        FlowEstimator("raft").pair(clip[0], clip[1])


def test_raft_gives_a_flow_of_the_frame_size(monkeypatch, tmp_path):
    from torchvision.models.optical_flow import raft_large

    import artconv.nets.weights as weights

    path = tmp_path / "raft.pth"
    torch.manual_seed(0)
    torch.save(raft_large(weights=None).state_dict(), path)
    monkeypatch.setattr(weights, "fetch", lambda url, what: path)
    clip = frames(2, (36, 44))  # not a multiple of 8: padded for RAFT, cropped back
    pair = FlowEstimator("raft").pair(clip[0], clip[1])
    assert pair.forward.shape == pair.backward.shape == (36, 44, 2)
