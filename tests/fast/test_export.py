"""`artconv export MODEL -o model.onnx`: the graph onnxruntime runs gives the network's
pictures at any size and batch (within 2/255), with the recipe in its metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artconv.fast.pretrained import open_model
from tests.conftest import run_cli
from tests.fast.fast_models import tiny_model
from tests.fast.test_pretrained import examples_state

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("kind", ["artconv", "examples"])
def test_onnx_matches_the_network_at_several_sizes(tmp_path, capsys, kind):
    if kind == "artconv":
        model = tiny_model(tmp_path / "m.safetensors", width=4, blocks=2)
    else:  # a 0-255 network: the scale must be inside the graph
        model = tmp_path / "candy.pth"
        torch.save(examples_state(width=4, blocks=1), model)
    out = tmp_path / "m.onnx"
    code, _, err = run_cli(["export", str(model), "-o", str(out)], capsys)
    assert code == 0, err
    net = open_model(model).net
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,), (made,) = session.get_inputs(), session.get_outputs()
    assert (given.name, made.name) == ("image", "stylised")
    gen = torch.Generator().manual_seed(0)
    for n, h, w in [(1, 64, 64), (2, 37, 53), (1, 96, 130), (3, 33, 30)]:
        photos = torch.rand(n, 3, h, w, generator=gen)
        (got,) = session.run(None, {"image": photos.numpy()})
        with torch.no_grad():
            want = net(photos).numpy()
        assert got.shape == (n, 3, h, w)
        assert np.abs(got - want).max() <= 2 / 255
        assert got.min() >= 0 and got.max() <= 1
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["artconv"])["path"] == str(model)


def test_refusals_write_nothing(tmp_path, capsys):
    model = tiny_model(tmp_path / "m.safetensors")
    before = sorted(tmp_path.iterdir())
    code, _, err = run_cli(["export", str(model), "-o", str(tmp_path / "m.png")], capsys)
    assert code != 0 and "must end in .onnx" in err
    code, _, err = run_cli(["export", str(tmp_path / "none.safetensors"), "-o",
                            str(tmp_path / "x.onnx")], capsys)
    assert code != 0 and "none.safetensors: no such model file" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before
