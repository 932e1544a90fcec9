"""pytorch/examples' published fast-neural-style models load as they are: their layout, their
0-255 pixels and the stale InstanceNorm running statistics old torch saved. The state dict is
written here in that layout (no download); an independent sketch of their network checks the
pixels."""

from __future__ import annotations

import zipfile

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from artconv.errors import ArtconvError
from artconv.fast.pretrained import PUBLISHED, PUBLISHED_ZIP, open_model
from artconv.io.files import url_cache_path
from artconv.io.images import load_image, read_recipe
from tests.conftest import make_image, run_cli


def examples_state(width: int = 8, blocks: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict as pytorch/examples' TransformerNet saves it, with the running_mean/var
    entries that torch < 0.4 kept for InstanceNorm2d."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        scale = (cin * k * k) ** -0.5
        state[f"{name}.conv2d.weight"] = torch.randn(cout, cin, k, k, generator=gen) * scale
        state[f"{name}.conv2d.bias"] = torch.randn(cout, generator=gen) * 10

    def norm(name: str, c: int) -> None:
        state[f"{name}.weight"] = 1 + 0.3 * torch.randn(c, generator=gen)
        state[f"{name}.bias"] = 0.3 * torch.randn(c, generator=gen)
        state[f"{name}.running_mean"] = torch.randn(c, generator=gen)  # stale
        state[f"{name}.running_var"] = torch.rand(c, generator=gen)

    w = width
    conv("conv1", 3, w, 9), norm("in1", w)
    conv("conv2", w, 2 * w, 3), norm("in2", 2 * w)
    conv("conv3", 2 * w, 4 * w, 3), norm("in3", 4 * w)
    for i in range(1, blocks + 1):
        conv(f"res{i}.conv1", 4 * w, 4 * w, 3), norm(f"res{i}.in1", 4 * w)
        conv(f"res{i}.conv2", 4 * w, 4 * w, 3), norm(f"res{i}.in2", 4 * w)
    conv("deconv1", 4 * w, 2 * w, 3), norm("in4", 2 * w)
    conv("deconv2", 2 * w, w, 3), norm("in5", w)
    conv("deconv3", w, 3, 9)
    state["deconv3.conv2d.bias"] = state["deconv3.conv2d.bias"] + 128  # around mid-grey
    return state


def examples_forward(state: dict[str, torch.Tensor], x255: torch.Tensor, blocks: int
                     ) -> torch.Tensor:
    """Their forward, written out from the paper's description: 0-255 in, 0-255 out."""

    def conv(name: str, x: torch.Tensor, stride: int = 1, up: bool = False) -> torch.Tensor:
        weight = state[f"{name}.conv2d.weight"]
        if up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.pad(x, [weight.shape[-1] // 2] * 4, mode="reflect")
        return F.conv2d(x, weight, state[f"{name}.conv2d.bias"], stride)

    def norm(name: str, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=state[f"{name}.weight"], bias=state[f"{name}.bias"])

    y = F.relu(norm("in1", conv("conv1", x255)))
    y = F.relu(norm("in2", conv("conv2", y, 2)))
    y = F.relu(norm("in3", conv("conv3", y, 2)))
    for i in range(1, blocks + 1):
        r = F.relu(norm(f"res{i}.in1", conv(f"res{i}.conv1", y)))
        y = y + norm(f"res{i}.in2", conv(f"res{i}.conv2", r))
    y = F.relu(norm("in4", conv("deconv1", y, up=True)))
    y = F.relu(norm("in5", conv("deconv2", y, up=True)))
    return conv("deconv3", y)


def test_a_pth_in_their_layout_loads_and_matches_their_network(tmp_path):
    state = examples_state(width=8, blocks=2)
    path = tmp_path / "mosaic.pth"
    torch.save(state, path)
    model = open_model(path)
    assert (model.net.width, model.net.blocks, model.net.scale) == (8, 2, 255.0)
    photo = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = (examples_forward(state, photo * 255, blocks=2) / 255).clamp(0, 1)
        got = model.net(photo)
    assert 0.05 < want.mean() < 0.95  # not a clamped blank
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_a_pth_through_the_cli(tmp_path, capsys):
    torch.save(examples_state(), tmp_path / "candy.pth")
    photo = make_image(tmp_path / "photo.png", (40, 32))
    out = tmp_path / "out.png"
    code, _, err = run_cli(["style", str(photo), "--model", str(tmp_path / "candy.pth"),
                            "-o", str(out), "--precision", "fp32", "-q"], capsys)
    assert code == 0, err
    assert load_image(out).shape == (3, 32, 40)
    assert read_recipe(out)["model"]["net"] == {"width": 8, "blocks": 2, "scale": 255.0}


def test_a_published_name_takes_its_file_from_the_cached_zip(tmp_path):
    """As if downloaded once: the zip in the cache (XDG_CACHE_HOME is the test's own)."""
    zipped = url_cache_path(PUBLISHED_ZIP)
    zipped.parent.mkdir(parents=True)
    pth = tmp_path / "rain_princess.pth"
    torch.save(examples_state(seed=3), pth)
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(pth, "saved_models/rain_princess.pth")
    model = open_model("rain-princess")
    assert model.name == "rain-princess" and model.path.name.endswith("rain_princess.pth")
    assert torch.equal(model.net.conv1.conv2d.weight,
                       examples_state(seed=3)["conv1.conv2d.weight"])
    assert set(PUBLISHED) == {"candy", "mosaic", "rain-princess", "udnie"}
    with pytest.raises(ArtconvError, match="has no udnie.pth"):
        open_model("udnie")


@pytest.mark.parametrize("content, message", [
    ({"conv1.weight": torch.zeros(2)}, "not a pytorch/examples TransformerNet state dict"),
    ({**examples_state(), "extra.weight": torch.zeros(1)}, "unexpected extra.weight"),
])
def test_other_state_dicts_are_one_line(tmp_path, content, message):
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(ArtconvError, match=message):
        open_model(path)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"layer": nn.Linear(2, 2)}, path)  # a module object, not tensors
    with pytest.raises(ArtconvError, match="evil.pth: refused"):
        open_model(path)
