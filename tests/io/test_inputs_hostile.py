"""Hostile inputs (#20, #26): 16-bit and transparent pictures read the same as stills and as
frames, inputs decoded at the size the run needs, and pixel bombs refused in one line
wherever they come in. Memory is tested by the decision (the decode size, the refusal
before decoding), on small files declaring huge sizes; nothing here allocates much."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import artconv.io.images as images
from artconv.io.images import image_hw, load_image, save_image
from artconv.video.io import probe, read_frames
from artconv.video.options import VideoOptions
from tests.conftest import make_image, run_cli
from tests.video.clips import frames, write_clip


def declared_png(path: Path, w: int, h: int) -> Path:
    """A few-byte PNG whose header declares w x h RGB pixels (its data is cut short)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                                       0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- 16 bits and alpha ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_colour_file_is_read_at_16_bits(tmp_path, suffix):
    """What --bit-depth 16 writes comes back at 16 bits (--init, --resume of a print)."""
    x = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(0))
    path = save_image(x, tmp_path / f"p{suffix}", depth=16)
    assert (load_image(path) - x).abs().max() < 1e-4  # 8 bits would be off by up to 2e-3
    small = load_image(path, 20)
    assert small.shape == (3, 12, 20)
    assert (small - images.resize_to(x, (12, 20))).abs().max() < 0.02


def test_a_16_bit_rgba_png_is_composited_over_white_like_an_8_bit_one(tmp_path):
    bgra = np.zeros((8, 10, 4), np.uint16)
    bgra[..., 2] = 30000  # red
    bgra[:, :5, 3] = 65535  # left half opaque, right half transparent
    path = tmp_path / "a16.png"
    cv2.imwrite(str(path), bgra)
    out = load_image(path)
    assert torch.allclose(out[:, :, :5], torch.tensor([30000 / 65535, 0, 0])[:, None, None],
                          atol=1e-5)
    assert torch.allclose(out[:, :, 5:], torch.ones(3, 8, 5))


def test_frames_are_read_by_the_still_reader_16_bit_grey_and_rgba_alike(tmp_path):
    """A folder of 16-bit grey frames dreamt to white (PIL's convert clipped them); RGBA
    frames were not composited. Frames now read exactly as load_image reads the file."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(np.full((16, 24), 20000 + k, np.uint16)).save(folder / f"f{k}.png")
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[..., 3] = 0  # wholly transparent black: white
    Image.fromarray(rgba, "RGBA").save(folder / "f2.png")
    got = list(read_frames(folder))
    assert len(got) == 3
    for frame, path in zip(got, sorted(folder.iterdir()), strict=True):
        assert torch.equal(torch.as_tensor(frame), load_image(path))
    assert abs(float(got[0].mean()) - 20000 / 65535) < 1e-6
    assert float(got[2].min()) == 1.0


# -- decoded at the size the run needs --------------------------------------------------------
def test_frames_are_decoded_at_the_size_asked_for(tmp_path):
    folder = tmp_path / "frames"
    for k in range(2):
        make_image(folder / f"f{k}.png", (80, 60), seed=k)
    assert [tuple(f.shape) for f in read_frames(folder, size=20)] == [(3, 15, 20)] * 2
    clip = write_clip(tmp_path / "c.mp4", frames(3, (48, 64)), fps=10, audio=False)
    got = list(read_frames(clip, size=16))
    assert [f.shape for f in got] == [(12, 16, 3)] * 3 and got[0].dtype == np.uint8
    assert list(read_frames(clip, size=100))[0].shape == (48, 64, 3)  # never enlarged


@pytest.fixture
def load_sizes(monkeypatch) -> dict[str, int | None]:
    """The size each file was asked to load at, by name (a spy on `load_image` where the
    CLI and batch call it: a single style is one job through batch's runner)."""
    import artconv.batch.local as local

    asked: dict[str, int | None] = {}
    real = images.load_image

    def spy(src, size=None, **kw):
        asked[Path(src).name] = size
        return real(src, size, **kw)

    monkeypatch.setattr(images, "load_image", spy)
    monkeypatch.setattr(local, "load_image", spy)
    return asked


SMALL_STYLE = ["--content-layers", "r2", "--style-layers", "r1,r2", "-s", "32",
               "--style-scale", "0.5", "--iterations", "1", "--device", "cpu", "--precision",
               "fp32", "--quiet"]


def test_style_reads_content_and_style_at_the_size_it_needs(tmp_path, backbone_file,
                                                            capsys, load_sizes):
    """`style big.png s.png -s 32` decoded big.png at full size (3.7 GB for 9990 px)."""
    content = make_image(tmp_path / "c.png", (300, 200))
    style = make_image(tmp_path / "s.png", (240, 180), seed=1)
    code, _, err = run_cli(["style", str(content), str(style), "--backbone",
                            f"{backbone_file}:build", *SMALL_STYLE,
                            "-o", str(tmp_path / "o.png")], capsys)
    assert code == 0, err
    assert load_sizes == {"c.png": 32, "s.png": 16}


def test_a_style_batch_reads_its_styles_at_the_size_it_needs(tmp_path, backbone_file,
                                                              capsys, load_sizes):
    content = make_image(tmp_path / "c.png", (300, 200))
    style = make_image(tmp_path / "s.png", (240, 180), seed=1)
    code, _, err = run_cli(["batch", "style", str(content), "--styles", str(style),
                            "--out-dir", str(tmp_path / "out"), "--backbone",
                            f"{backbone_file}:build", *SMALL_STYLE], capsys)
    assert code == 0, err
    assert load_sizes == {"c.png": 32, "s.png": 16}


# -- pixel bombs ------------------------------------------------------------------------------
def test_a_pixel_bomb_in_a_frames_folder_is_one_line_before_any_work(tmp_path, capsys):
    folder = tmp_path / "frames"
    make_image(folder / "a.png", (32, 32))
    declared_png(folder / "b.png", 20000, 20000)
    code, _, err = run_cli(["dream", str(folder), "-s", "32", "--weights", "random",
                            "-o", str(tmp_path / "out.mp4")], capsys)
    line = one_line(err)
    assert code != 0 and "b.png: 20000x20000 is 400.0 MP, over the 100.0 MP limit" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # nothing written
    with pytest.raises(images.ArtconvError, match="over the"):
        probe(folder)
    assert image_hw(folder / "b.png") == (20000, 20000)  # the header alone: no limit


# -- clips that hold fewer frames than they list, and valid variable frame rates -------------
def _mp4(path: Path, pts: list[int], **options: str) -> Path:
    """An H.264 clip at time base 1/12 with the given frame times (a gap is a held frame)."""
    import av

    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 12)
        for image, t in zip(frames(len(pts), (48, 64)), pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 12)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_clip_holding_fewer_frames_than_it_lists_is_refused_before_any_work(tmp_path,
                                                                             capsys):
    """Its index lists 12 frames, 3 decode: that was a silent 3-frame clip, "partial": false."""
    whole = _mp4(tmp_path / "whole.mp4", list(range(12)), movflags="faststart")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 9 // 10])
    code, _, err = run_cli(["dream", str(cut), "-s", "32", "--weights", "random",
                            "-o", str(tmp_path / "out.mp4")], capsys)
    line = one_line(err)
    assert code != 0 and "cut.mp4: holds 6 of the 12 frames it lists (frames 7-12" in line
    assert "--duration" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "whole.mp4"]
    assert len(list(read_frames(cut, VideoOptions(duration=0.25)))) == 3  # what is there


def test_a_variable_frame_rate_clip_with_a_long_hold_is_read_whole(tmp_path):
    """A frame held 0.83 s (10 frame times at 12 fps) is no damage: all 8 frames come."""
    clip = _mp4(tmp_path / "vfr.mp4", [0, 1, 2, 12, 13, 14, 15, 16])
    assert probe(clip).frames == 8
    assert len(list(read_frames(clip))) == 8
