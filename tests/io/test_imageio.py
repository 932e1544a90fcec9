"""Tests for artconv.io.images: every input kind loads the same way, every output is safe."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageCms

from artconv.errors import ArtconvError
from artconv.io.images import (
    atomic_write_bytes,
    image_hw,
    list_images,
    load_image,
    read_recipe,
    resize_longest,
    resize_to,
    save_image,
    to_pil,
)

RED = (1.0, 0.0, 0.0)
WHITE = (1.0, 1.0, 1.0)


def pixel(t: torch.Tensor, y: int, x: int) -> tuple[float, ...]:
    return tuple(t[:, y, x].tolist())


def assert_rgb_image(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (3, h, w)
    assert t.dtype == torch.float32
    assert t.is_contiguous()
    assert t.min() >= 0.0 and t.max() <= 1.0


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- PIL modes
# Each case: an 8x6 image in one mode, the file format that can hold it, and the RGB that
# pixel (0, 0) and pixel (1, 1) must load as.


def _l() -> Image.Image:
    return Image.new("L", (8, 6), 77)


def _la() -> Image.Image:
    img = Image.new("LA", (8, 6), (0, 128))  # black at half alpha -> mid grey over white
    img.putpixel((0, 0), (0, 0))
    return img


def _p(transparent: bool) -> Image.Image:
    img = Image.new("P", (8, 6), 1)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.putpixel((0, 0), 0)
    if transparent:
        img.info["transparency"] = 0
    return img


def _rgb() -> Image.Image:
    img = Image.new("RGB", (8, 6), (10, 128, 250))
    img.putpixel((0, 0), (255, 0, 0))
    return img


def _rgba() -> Image.Image:
    img = Image.new("RGBA", (8, 6), (0, 255, 0, 255))
    img.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent blue must not show
    return img


def _cmyk() -> Image.Image:
    img = Image.new("CMYK", (8, 6), (0, 255, 255, 0))
    img.putpixel((0, 0), (0, 0, 0, 255))
    return img


def _i16() -> Image.Image:
    arr = np.full((6, 8), 1000, dtype=np.uint16)  # 8 bits would make this 4/255 = 0.01569
    arr[0, 0] = 65535
    return Image.fromarray(arr)


MODE_CASES = {
    "L": (_l, ".png", (77 / 255,) * 3, (77 / 255,) * 3),
    "LA": (_la, ".png", WHITE, (127 / 255,) * 3),
    "P": (lambda: _p(False), ".png", (0.0, 0.0, 0.0), RED),
    "P+transparency": (lambda: _p(True), ".png", WHITE, RED),
    "RGB": (_rgb, ".png", RED, (10 / 255, 128 / 255, 250 / 255)),
    "RGBA": (_rgba, ".png", WHITE, (0.0, 1.0, 0.0)),
    "CMYK": (_cmyk, ".tif", (0.0, 0.0, 0.0), RED),
    "I;16": (_i16, ".png", WHITE, (1000 / 65535,) * 3),
}


@pytest.mark.parametrize("from_disk", [True, False], ids=["file", "pil"])
@pytest.mark.parametrize("case", MODE_CASES)
def test_every_mode_loads_as_rgb(case: str, from_disk: bool, tmp_path: Path) -> None:
    make, ext, at_00, at_11 = MODE_CASES[case]
    img = make()
    if from_disk:
        path = tmp_path / f"img{ext}"
        img.save(path)
        with Image.open(path) as saved:
            assert saved.mode == img.mode  # the file really holds this mode
        t = load_image(path)
    else:
        t = load_image(img)
    assert_rgb_image(t, 6, 8)
    assert pixel(t, 0, 0) == pytest.approx(at_00, abs=1e-6)
    assert pixel(t, 1, 1) == pytest.approx(at_11, abs=1e-6)


# --------------------------------------------------------------------------- arrays, tensors

H, W = 5, 7  # not square, so a transposed layout can't pass


def _arrays() -> dict[str, tuple[np.ndarray | torch.Tensor, tuple[float, ...]]]:
    """Inputs whose pixel (0, 0) is marked, with the RGB it must load as."""
    u8_gray = np.zeros((H, W), np.uint8)
    u8_gray[0, 0] = 51
    u8_rgba = np.zeros((H, W, 4), np.uint8)
    u8_rgba[..., 3] = 255  # opaque black, but for the marker
    u8_rgba[0, 0] = (0, 0, 255, 0)
    u16 = np.zeros((H, W), np.uint16)
    u16[0, 0] = 1000
    f_rgb = np.zeros((H, W, 3), np.float64)
    f_rgb[0, 0] = (1.5, -0.2, 0.25)  # out of range: clamped
    t_rgb = torch.zeros(3, H, W)
    t_rgb[:, 0, 0] = torch.tensor([0.2, 0.4, 0.6])
    t_rgba = torch.zeros(4, H, W)
    t_rgba[3] = 1.0
    t_rgba[:, 0, 0] = torch.tensor([0.0, 0.0, 0.0, 0.25])  # black at 1/4 alpha over white
    return {
        "np-u8-HW": (u8_gray, (0.2,) * 3),
        "np-u8-HW1": (u8_gray[:, :, None], (0.2,) * 3),
        "np-u8-HW3": (np.repeat(u8_gray[:, :, None], 3, axis=2), (0.2,) * 3),
        "np-u8-HW4": (u8_rgba, WHITE),
        "np-u16-HW": (u16, (1000 / 65535,) * 3),
        "np-u16-bigendian": (u16.astype(">u2"), (1000 / 65535,) * 3),
        "np-float-HW3": (f_rgb, (1.0, 0.0, 0.25)),
        "np-readonly-flipped": (np.flipud(np.flipud(u8_gray)), (0.2,) * 3),
        "t-HW": (t_rgb[0], (0.2,) * 3),
        "t-1HW": (t_rgb[:1], (0.2,) * 3),
        "t-3HW": (t_rgb, (0.2, 0.4, 0.6)),
        "t-4HW": (t_rgba, (0.75,) * 3),
        "t-13HW": (t_rgb[None], (0.2, 0.4, 0.6)),
        "t-u8": ((t_rgb * 255).round().to(torch.uint8), (0.2, 0.4, 0.6)),
    }


@pytest.mark.parametrize("name", _arrays())
def test_arrays_and_tensors_load_as_rgb(name: str) -> None:
    src, expected = _arrays()[name]
    if isinstance(src, np.ndarray):
        src.setflags(write=False)
    t = load_image(src)
    assert_rgb_image(t, H, W)
    assert pixel(t, 0, 0) == pytest.approx(expected, abs=1e-6)
    assert pixel(t, 1, 1) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)


@pytest.mark.parametrize(
    "src",
    [np.zeros((5, 7, 2)), np.zeros(5), torch.zeros(2, 3, 5, 7), torch.zeros(2, 5, 7)],
    ids=["np-2ch", "np-1d", "t-batch2", "t-2ch"],
)
def test_bad_shapes_are_named(src: np.ndarray | torch.Tensor) -> None:
    with pytest.raises(ArtconvError, match=r"shape \(") as err:
        load_image(src)
    assert str(tuple(src.shape)) in str(err.value)


# --------------------------------------------------------------------------- EXIF, ICC


@pytest.mark.parametrize(
    ("ext", "orientation", "marker_yx"),
    [(".jpg", 6, (0, 7)), (".png", 8, (15, 0))],  # 6: turn clockwise, 8: counter-clockwise
)
def test_exif_orientation_is_applied(
    ext: str, orientation: int, marker_yx: tuple[int, int], tmp_path: Path
) -> None:
    arr = np.zeros((8, 16, 3), np.uint8)  # stored landscape, 8 high x 16 wide
    arr[:4, :4] = (255, 0, 0)  # red block at the stored top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path = tmp_path / f"rotated{ext}"
    Image.fromarray(arr).save(path, exif=exif, quality=100)

    t = load_image(path)
    assert_rgb_image(t, 16, 8)
    assert image_hw(path) == (16, 8)
    y, x = marker_yx
    assert pixel(t, y, x) == pytest.approx(RED, abs=0.1)
    assert pixel(t, 15 - y, 7 - x) == pytest.approx((0.0, 0.0, 0.0), abs=0.1)


def _srgb_icc(swap_red_green: bool = False) -> bytes:
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    if swap_red_green:  # point the rXYZ and gXYZ tags at each other's primaries
        count = struct.unpack_from(">I", data, 128)[0]
        entries = {
            struct.unpack_from(">4s", data, 132 + 12 * i)[0]: 132 + 12 * i for i in range(count)
        }
        r, g = entries[b"rXYZ"], entries[b"gXYZ"]
        data[r + 4 : r + 12], data[g + 4 : g + 12] = data[g + 4 : g + 12], data[r + 4 : r + 12]
    return bytes(data)


def test_icc_srgb_profile_keeps_values(tmp_path: Path) -> None:
    arr = noise(8, 8)
    path = tmp_path / "srgb.png"
    Image.fromarray(arr).save(path, icc_profile=_srgb_icc())
    t = load_image(path)
    expected = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    assert (t - expected).abs().max() <= 1 / 255


def test_icc_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    path = tmp_path / "swapped.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path, icc_profile=_srgb_icc(swap_red_green=True))
    r, g, b = pixel(load_image(path), 0, 0)
    assert g > 0.9 and r < 0.1 and b < 0.1  # "red" in this profile is sRGB green


def test_unreadable_icc_profile_warns_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "badicc.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path, icc_profile=b"not a profile" * 20)
    with pytest.warns(UserWarning, match=r"badicc\.png: ignoring unusable ICC profile"):
        t = load_image(path)
    assert pixel(t, 0, 0) == pytest.approx(RED)


# --------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    ("w", "h", "size", "out_hw"), [(40, 20, 16, (8, 16)), (20, 40, 16, (16, 8))]
)
def test_load_resizes_longest_side(
    w: int, h: int, size: int, out_hw: tuple[int, int], tmp_path: Path
) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(noise(h, w)).save(path)
    assert_rgb_image(load_image(path, size=size), *out_hw)


def test_resize_keeps_sides_positive_batches_and_range() -> None:
    thin = torch.rand(3, 1, 64)
    assert resize_longest(thin, 8).shape == (3, 1, 8)
    checker = (torch.arange(32 * 32).reshape(1, 1, 32, 32) % 2).float().expand(2, 3, -1, -1)
    up = resize_to(checker, (48, 40))  # bicubic rings past 0 and 1 on hard edges
    assert up.shape == (2, 3, 48, 40)
    assert up.min() >= 0 and up.max() <= 1


def test_resize_keeps_16bit_precision() -> None:
    flat = np.full((16, 16), 1000, np.uint16)
    assert load_image(flat, size=8)[0, 3, 3].item() == pytest.approx(1000 / 65535, abs=1e-6)


# --------------------------------------------------------------------------- load errors


def _truncated(tmp_path: Path, ext: str) -> Path:
    path = tmp_path / f"cut{ext}"
    Image.fromarray(noise(32, 32)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


ERROR_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda d: d / "nope.png", "no such file"),
    "folder": (lambda d: d, "folder"),
    "text-as-jpg": (
        lambda d: (d / "notes.jpg", (d / "notes.jpg").write_text("hello\n"))[0],
        "not an image file",
    ),
    "truncated-png": (lambda d: _truncated(d, ".png"), "truncated or corrupt image"),
    "truncated-jpg": (lambda d: _truncated(d, ".jpg"), "truncated or corrupt image"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_load_errors_name_the_file_on_one_line(case: str, tmp_path: Path) -> None:
    make, problem = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ArtconvError) as err:
        load_image(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and problem in msg and "\n" not in msg


@pytest.mark.parametrize("case", ["missing", "folder", "text-as-jpg"])
def test_image_hw_errors_match_load_image(case: str, tmp_path: Path) -> None:
    make, problem = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ArtconvError, match=problem):
        image_hw(path)


def test_too_large_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded pixels"))
    with pytest.raises(ArtconvError) as err:
        load_image(path, max_pixels=100)
    msg = str(err.value)
    assert msg.startswith(f"{path}: 20x20 is 400 pixels, over the 100 pixels limit")
    assert "ARTCONV_MAX_PIXELS" in msg and "\n" not in msg


def test_pil_pixel_limit_does_not_preempt_ours(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "img.png"
    Image.new("RGB", (20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL would call 400 px a bomb
    assert_rgb_image(load_image(path), 20, 20)
    assert Image.MAX_IMAGE_PIXELS == 100  # and its own setting is left as it was


# --------------------------------------------------------------------------- saving


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    t = torch.from_numpy(noise(12, 10)).permute(2, 0, 1).float() / 255
    out = save_image(t, tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    assert torch.equal(load_image(out), t)


def test_to_pil_rounds_instead_of_truncating() -> None:
    t = torch.full((1, 3, 2, 2), 254.6 / 255)
    assert to_pil(t).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("ext", "fmt"), [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF")]
)
def test_lossy_and_tiff_formats_save(ext: str, fmt: str, tmp_path: Path) -> None:
    t = torch.rand(3, 16, 24)
    path = save_image(t, tmp_path / "sub" / f"out{ext}")  # parent folders are created
    with Image.open(path) as img:
        assert img.format == fmt and img.mode == "RGB"
        if fmt == "TIFF":
            assert "deflate" in img.info["compression"]  # PIL reads it back as adobe_deflate
    assert_rgb_image(load_image(path), 16, 24)


def test_rgba_pil_image_saves_as_jpeg(tmp_path: Path) -> None:
    path = save_image(Image.new("RGBA", (8, 8), (255, 0, 0, 255)), tmp_path / "out.jpg")
    assert pixel(load_image(path), 4, 4) == pytest.approx(RED, abs=0.02)


RECIPE = {"style": "starry", "layers": ["conv4_2", "conv5_1"], "weight": 1.5, "seed": 7}


def test_png_recipe_reads_back(tmp_path: Path) -> None:
    path = save_image(torch.rand(3, 8, 8), tmp_path / "out.png", recipe=RECIPE)
    assert read_recipe(path) == RECIPE
    assert not (tmp_path / "out.png.json").exists()  # it travels inside the PNG


def test_jpeg_recipe_goes_to_sidecar(tmp_path: Path) -> None:
    path = save_image(torch.rand(3, 8, 8), tmp_path / "out.jpg", recipe=RECIPE)
    assert (tmp_path / "out.jpg.json").is_file()
    assert read_recipe(path) == RECIPE


def test_read_recipe_without_one(tmp_path: Path) -> None:
    path = save_image(torch.rand(3, 8, 8), tmp_path / "plain.png")
    with pytest.raises(ArtconvError, match="carries no artconv recipe"):
        read_recipe(path)


def test_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(noise(8, 8)).save(src)
    before = src.read_bytes()
    same_file = tmp_path / "sub" / ".." / "in.png"  # another spelling of the input
    with pytest.raises(ArtconvError, match="refusing to overwrite an input image") as err:
        save_image(torch.rand(3, 8, 8), same_file, inputs=[src])
    assert str(err.value).startswith(str(same_file)) and str(src) in str(err.value)
    assert str(err.value).endswith("choose another output path")
    assert src.read_bytes() == before


def test_overwrite_false_keeps_existing_file(tmp_path: Path) -> None:
    path = save_image(torch.zeros(3, 8, 8), tmp_path / "out.png")
    before = path.read_bytes()
    with pytest.raises(ArtconvError, match=r"exists \(use --overwrite\)"):
        save_image(torch.ones(3, 8, 8), path, overwrite=False)
    assert path.read_bytes() == before


def test_failed_save_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = save_image(torch.zeros(3, 8, 8), tmp_path / "out.png")
    before = path.read_bytes()

    def crash_midway(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"half an image")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", crash_midway)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_image(torch.ones(3, 8, 8), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


def test_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "out.png"  # a folder that can't exist (works even as root)
    with pytest.raises(ArtconvError, match="cannot write") as err:
        save_image(torch.rand(3, 8, 8), target)
    assert str(err.value).startswith(f"{target}: ") and "\n" not in str(err.value)


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ArtconvError, match=r"unsupported output format '\.xyz'"):
        save_image(torch.rand(3, 8, 8), tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes_uses_normal_permissions(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "data.bin", b"abc")
    assert path.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


# --------------------------------------------------------------------------- listing


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    for name in ["b.jpg", "a.png", "sub/d.png", "notes.txt", "b.jpg.json"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_list_images_folder_and_globs(gallery: Path) -> None:
    assert list_images(gallery) == [gallery / "a.png", gallery / "b.jpg"]
    assert list_images(f"{gallery}/*") == [gallery / "a.png", gallery / "b.jpg"]
    assert list_images(str(gallery / "**" / "*.png")) == [gallery / "a.png", gallery / "sub/d.png"]
    both = list_images([gallery / "sub", str(gallery / "*.png"), gallery / "sub" / "d.png"])
    assert both == [gallery / "a.png", gallery / "sub/d.png"]


@pytest.mark.parametrize("item", ["*.gif", "missing.png", "sub/*.jpg"])
def test_list_images_nothing_found(item: str, gallery: Path) -> None:
    with pytest.raises(ArtconvError, match=r"no (image files|such file)"):
        list_images(str(gallery / item))


def test_pixel_limit_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (30, 20)).save(path)
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "500")
    with pytest.raises(ArtconvError, match=r"big.png: 30x20 .*ARTCONV_MAX_PIXELS"):
        load_image(path)
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "600")
    assert load_image(path).shape == (3, 20, 30)


def test_resizing_beyond_the_pixel_limit_is_refused_before_allocating(monkeypatch):
    from artconv.io.images import fit_longest

    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "10000")
    assert fit_longest((30, 40), 100) == (75, 100)
    with pytest.raises(ArtconvError, match=r"--size 1000: a 1000x750 image is .* over the"):
        fit_longest((30, 40), 1000)
