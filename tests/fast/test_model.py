"""The model file: weights and recipe round-trip; anything else is one line, nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from artconv.errors import ArtconvError
from artconv.fast.model import MODEL_KEY, load_model, save_model
from artconv.fast.net import TransformerNet
from artconv.io.recipe import read_any_recipe


def _net(width: int = 4, blocks: int = 2, seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(width=width, blocks=blocks).eval()


def test_round_trip_keeps_weights_shape_and_recipe(tmp_path):
    net = _net(width=6, blocks=3)
    recipe = {"engine": "train", "styles": [{"path": "a.png", "sha256": "ab"}], "steps": 7}
    path = save_model(tmp_path / "m.safetensors", net, recipe)
    loaded, got = load_model(path)
    assert got == recipe
    assert (loaded.width, loaded.blocks) == (6, 3) and not loaded.training
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert read_any_recipe(path) == recipe  # what `artconv recipe MODEL` prints
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporaries left


def test_save_replaces_atomically_and_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = save_model(tmp_path / "m.safetensors", _net(), {"v": 1})
    before = path.read_bytes()

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("artconv.fast.model.save_file", broken)
    with pytest.raises(ArtconvError, match="cannot write"):
        save_model(path, _net(seed=1), {"v": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_not_a_model(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, not a model")
    with pytest.raises(ArtconvError, match=r"notes.safetensors: not an artconv style model"):
        load_model(text)
    plain = tmp_path / "weights.safetensors"  # safetensors, but some other tensors
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(ArtconvError, match=rf"weights.safetensors: .*'{MODEL_KEY}'"):
        load_model(plain)
    with pytest.raises(ArtconvError, match="missing.safetensors: no such model file"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(ArtconvError, match="is a folder"):
        load_model(tmp_path)


def test_newer_format_is_refused_in_one_line(tmp_path):
    net = _net()
    path = tmp_path / "future.safetensors"
    save_file(dict(net.state_dict()), str(path), metadata={
        MODEL_KEY: json.dumps({"format": 99, "net": "TransformerNet", **net.config}),
        "artconv": "{}"})
    with pytest.raises(ArtconvError) as err:
        load_model(path)
    assert "newer artconv" in str(err.value) and "format 99" in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_shapes_name_the_tensor(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _net(width=4), {})
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    header["__metadata__"][MODEL_KEY] = json.dumps(
        {"format": 1, "net": "TransformerNet", "width": 8, "blocks": 2, "scale": 1.0})
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (tmp_path / "lie.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw
                                               + data[8 + header_len:])
    with pytest.raises(ArtconvError, match=r"lie.safetensors: not a TransformerNet of width 8"):
        load_model(tmp_path / "lie.safetensors")
