"""Region masks (Gatys 2017 guided Gram matrices): the masked statistics, the option checks,
the CLI and recipe, and the real-network test that each half takes its own style's colour."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe
from artconv.losses import functional as losses
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import SHARED, make_image
from tests.style.test_style_cli import net_args, run_cli

TINY_DARKNET = SHARED / "models" / "tiny_darknet" / "load.py"


def half_masks(tmp_path: Path, size: tuple[int, int] = (48, 40)) -> tuple[Path, Path]:
    """Left-half and right-half masks (white = that style), as 8-bit grey PNGs (w, h)."""
    w, h = size
    left = np.zeros((h, w), np.uint8)
    left[:, : w // 2] = 255
    paths = (tmp_path / "left.png", tmp_path / "right.png")
    Image.fromarray(left).save(paths[0])
    Image.fromarray(255 - left).save(paths[1])
    return paths


# -- the statistics ------------------------------------------------------------------------
def test_guided_gram_with_all_ones_mask_is_the_plain_gram():
    f = torch.randn(2, 5, 6, 7)
    ones = torch.ones(1, 1, 6, 7)
    torch.testing.assert_close(losses.gram(f, ones), losses.gram(f))
    for a, b in zip(losses.moments(f, ones), losses.moments(f), strict=True):
        torch.testing.assert_close(a, b)
    target = losses.gram(torch.randn(1, 5, 4, 4))
    torch.testing.assert_close(losses.gram_loss(f, target, ones), losses.gram_loss(f, target))


def test_half_mask_gram_sees_only_that_half():
    f = torch.randn(1, 4, 6, 8)
    mask = torch.zeros(1, 1, 6, 8)
    mask[..., :4] = 1
    torch.testing.assert_close(losses.gram(f, mask), losses.gram(f[..., :4]))
    changed = f.clone()
    changed[..., 4:] = torch.randn(1, 4, 6, 4) * 10  # the other half does not matter
    torch.testing.assert_close(losses.gram(changed, mask), losses.gram(f, mask))
    mean, srm = losses.moments(f, mask)
    ref_mean, ref_srm = losses.moments(f[..., :4])
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(srm, ref_srm)


def test_soft_mask_weighs_positions_and_layer_mask_resizes():
    f = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(losses.gram(f, torch.full((1, 1, 4, 4), 0.3)), losses.gram(f))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    small = losses.layer_mask(mask, (8, 8))
    assert small.shape == (1, 1, 8, 8)
    # bilinear (antialiased): one soft column each side of the edge
    assert float(small[..., :3].min()) > 0.99 and float(small[..., 5:].max()) < 0.01
    assert float(losses.mask_mass(small)[0]) == pytest.approx(0.5, abs=0.01)


def test_all_ones_mask_run_equals_the_unmasked_run(tmp_path, backbone_file):
    white = tmp_path / "white.png"
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(white)
    content = load_image(make_image(tmp_path / "c.png"))
    style = load_image(make_image(tmp_path / "s.png", (40, 40), seed=1))
    base = StyleOptions(backbone=f"{backbone_file}:build", size=32, iterations=(4,),
                        content_layers=("r2",), style_layers=("r1", "r2"), precision="fp32",
                        device="cpu", optimizer="adam")
    for loss in ("gram", "w2"):
        plain = StyleTransfer(base.replace(style_loss=loss)).run(content[None], [style])
        masked = StyleTransfer(base.replace(style_loss=loss, masks=(str(white),))).run(
            content[None], [style])
        torch.testing.assert_close(masked, plain, atol=1e-4, rtol=0)


# -- options and errors ---------------------------------------------------------------------
def test_mask_option_checks(tmp_path):
    with pytest.raises(ArtconvError, match=r"^--blend and --masks"):
        StyleOptions(masks=("a.png",), blend=(1.0,)).validated()
    with pytest.raises(ArtconvError, match=r"^--masks-rest 'sky'"):
        StyleOptions(masks=("a.png",), masks_rest="sky").validated()
    with pytest.raises(ArtconvError, match=r"^--style-masks: needs --masks"):
        StyleOptions(style_masks=("a.png",)).validated()
    opts = StyleOptions(masks=("a.png", "b.png"), masks_rest="style2").validated()
    with pytest.raises(ArtconvError, match=r"^--masks: 2 mask\(s\) for 3 style image\(s\)"):
        opts.blend_weights(3)
    with pytest.raises(ArtconvError, match=r"^--masks-rest style2: there are 2"):
        opts.blend_weights(2)


def test_bad_mask_file_is_one_line_naming_the_option(tmp_path, backbone_file):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    for path in (bad, tmp_path / "missing.png"):
        with pytest.raises(ArtconvError) as info:
            StyleTransfer(StyleOptions(backbone=f"{backbone_file}:build", masks=(str(path),),
                                       device="cpu", content_layers=("r2",),
                                       style_layers=("r1",)))
        message = str(info.value)
        assert message.startswith(f"--masks {path}") and "\n" not in message


def test_cli_masks_recipe_has_hashes(tmp_path, capsys, backbone_file):
    content = make_image(tmp_path / "content.png")
    styles = [make_image(tmp_path / f"s{i}.png", (40, 40), seed=i + 1) for i in range(2)]
    left, right = half_masks(tmp_path)
    files = {"backbone": backbone_file}
    out = tmp_path / "out.png"
    code, _, err = run_cli(["style", str(content), *map(str, styles), *net_args(files, 48, 3),
                            "--masks", f"{left},{right}", "--style-loss", "w2", "-o",
                            str(out), "-q"], capsys)
    assert code == 0, err
    recipe = read_recipe(out)
    assert recipe["masks"] == [
        {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in (left, right)]
    assert recipe["options"]["masks"] == [str(left), str(right)]
    code, _, err = run_cli(["style", str(content), *map(str, styles), *net_args(files, 48, 3),
                            "--masks", str(left), "-o", str(tmp_path / "x.png")], capsys)
    assert code != 0 and "--masks: 1 mask(s) for 2 style image(s)" in err


def test_style_masks_and_rest_run(tmp_path, backbone_file):
    content = load_image(make_image(tmp_path / "c.png"))
    styles = [load_image(make_image(tmp_path / f"s{i}.png", (40, 40), seed=i + 1))
              for i in range(2)]
    left, right = half_masks(tmp_path)
    opts = StyleOptions(backbone=f"{backbone_file}:build", size=32, iterations=(3,),
                        content_layers=("r2",), style_layers=("r1", "r2"), precision="fp32",
                        device="cpu", masks=(str(left),), masks_rest="style0",
                        style_masks=(str(right),), scales=(24, 32))
    st = StyleTransfer(opts)
    out = st.run(torch.stack([content, content.flip(-1)]), styles[:1])
    assert out.shape == (2, 3, 27, 32) and bool(out.isfinite().all())
    assert st.recipe()["style_masks"][0]["path"] == str(right)
    regions = st.masks.regions((4, 4), "cpu")
    assert float(regions.min()) == 1.0  # left half + the uncovered rest: everything


# -- the real network: each half takes its own style's colour --------------------------------
def _flat_texture(rgb: tuple[float, float, float], seed: int, size: int = 96) -> torch.Tensor:
    """A flat colour with a faint texture (so the Gram has more than one direction)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.tensor(rgb).view(3, 1, 1).expand(3, size, size)
    return (base + 0.04 * torch.randn(3, size, size, generator=gen)).clamp(0, 1)


@pytest.mark.skipif(not TINY_DARKNET.is_file(), reason="needs ../shared/models/tiny_darknet")
def test_each_half_takes_its_own_styles_colour(tmp_path):
    red, blue = (0.85, 0.15, 0.1), (0.1, 0.2, 0.85)
    styles = [_flat_texture(red, 1), _flat_texture(blue, 2)]
    content = load_image(SHARED / "images" / "content" / "chelsea_cat.png")
    left, right = half_masks(tmp_path, (96, 64))
    opts = StyleOptions(backbone=f"{TINY_DARKNET}:build", size=80, iterations=(80,),
                        content_layers=("lrelu4",), style_layers=("lrelu1", "lrelu2", "lrelu4"),
                        precision="fp32", device="cpu", masks=(str(left), str(right)),
                        style_weight=200.0)
    out = StyleTransfer(opts).run(content[None], styles)[0]
    Image.fromarray((out.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
        tmp_path / "halves.png")
    w = out.shape[-1]
    halves = out[..., : w // 2 - 2].mean((1, 2)), out[..., w // 2 + 2:].mean((1, 2))
    targets = torch.tensor(red), torch.tensor(blue)
    dist = [[float((h - t).norm()) for t in targets] for h in halves]
    print(f"left half -> red {dist[0][0]:.3f}, blue {dist[0][1]:.3f}; "
          f"right half -> red {dist[1][0]:.3f}, blue {dist[1][1]:.3f}", file=sys.stderr)
    assert dist[0][0] < dist[0][1] and dist[1][1] < dist[1][0]
    assert dist[0][0] < 0.35 and dist[1][1] < 0.35  # stated: within 0.35 of its style (RGB)
