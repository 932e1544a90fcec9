"""Nothing lost (issue 15): every write checked before work, an output never without its
recipe (full disk, kill between writes), killed writers' temporaries swept, special files
refused instead of hanging, huge images shrunk before they become floats, bad settings
named in one line."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from artconv.errors import ArtconvError
from artconv.io import images as imageio
from artconv.io.images import load_image, read_recipe, resize_longest, save_image
from artconv.outputs import output_complete
from tests.conftest import make_image, run_cli


@pytest.fixture
def cli(capsys, backbone_file):
    """`cli(*args)` -> (exit code, one-line stderr) of `artconv features ... --backbone`."""

    def _run(*args: object) -> tuple[int, str]:
        argv = ["features", *map(str, args), "--backbone", f"{backbone_file}:build",
                "--precision", "fp32", "--device", "cpu", "-q"]
        code, _, err = run_cli(argv, capsys)
        return code, " ".join(err.split())  # rich wraps long lines

    return _run


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and err.startswith("error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def no_compute(monkeypatch):
    """Features computed at all fail the test: the checks must come before any work."""
    from artconv.features import files as featurefiles

    def refuse(*_args, **_kwargs):
        raise AssertionError("features computed before the output checks")

    monkeypatch.setattr(featurefiles.FeatureWriter, "compute", refuse)


# -- 1. every write checked before any work ----------------------------------------------------
def test_an_output_dir_write_over_another_input_is_refused_before_any_work(cli, tmp_path,
                                                                            no_compute):
    """a.png's PCA picture (out-dir/a.pca.png) would land on the second input."""
    folder = tmp_path / "in"
    make_image(folder / "a.png")
    victim = make_image(folder / "a.pca.png", seed=3)
    before = victim.read_bytes()
    code, err = cli(folder / "a.png", victim, "-l", "r1", "--out-dir", folder,
                    "--pca-shared")
    one_line_error(code, err, "--out-dir", str(victim), "is an input file")
    assert victim.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["a.pca.png", "a.png"]


def test_an_output_over_the_weights_file_is_refused(cli, tmp_path, image_file, no_compute):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"precious")
    code, err = cli(image_file, "-l", "r1", "--weights", weights, "-o", weights)
    one_line_error(code, err, "-o", str(weights), "is an input file")
    assert weights.read_bytes() == b"precious"


def test_a_heat_map_and_a_pca_picture_on_one_file_are_refused(cli, tmp_path, image_file,
                                                               no_compute):
    heat = tmp_path / "heat.png"
    link = tmp_path / "same.png"
    heat.write_bytes(b"")
    link.symlink_to(heat)  # one file under two names
    code, err = cli(image_file, "-l", "r1", "--similar-to", "1,1", "-o", heat, "--pca", link)
    one_line_error(code, err, "-o and --pca name the same file")


def test_an_unwritable_output_names_the_option(cli, tmp_path, image_file, no_compute):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code, err = cli(image_file, "-l", "r1", "-o", tmp_path / "f.npy",
                    "--pca", blocker / "pca.png")
    one_line_error(code, err, "--pca", "pca.png", "not a folder")
    assert not (tmp_path / "f.npy").exists()


# -- 3. an output and its recipe together -------------------------------------------------------
def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_the_recipe_leaves_no_image_without_it(tmp_path, monkeypatch):
    out = tmp_path / "x.jpg"
    real = Path.write_bytes

    def full_at_json(self, data):
        if ".json." in self.name:  # the sidecar's temporary
            enospc()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_json)
    with pytest.raises(ArtconvError, match="x.jpg.json: cannot write .No space left"):
        save_image(torch.rand(3, 8, 8), out, recipe={"engine": "test"})
    assert os.listdir(tmp_path) == []


def test_a_full_disk_at_the_image_leaves_neither(tmp_path, monkeypatch):
    out = tmp_path / "x.webp"
    monkeypatch.setattr(Image.Image, "save", enospc)
    with pytest.raises(ArtconvError, match="x.webp: cannot write .No space left"):
        save_image(torch.rand(3, 8, 8), out, recipe={"engine": "test"})
    assert os.listdir(tmp_path) == []


def test_a_failed_overwrite_keeps_the_old_image_and_its_own_recipe(tmp_path, monkeypatch):
    out = save_image(torch.zeros(3, 8, 8), tmp_path / "x.jpg", recipe={"run": 1})
    image_before = out.read_bytes()
    real = os.replace

    def image_rename_fails(src, dst):
        if Path(dst) == out:
            enospc()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", image_rename_fails)
    with pytest.raises(ArtconvError, match="cannot write"):
        save_image(torch.ones(3, 8, 8), out, recipe={"run": 2})
    monkeypatch.undo()
    assert out.read_bytes() == image_before and read_recipe(out) == {"run": 1}
    assert sorted(os.listdir(tmp_path)) == ["x.jpg", "x.jpg.json"]


# A process that dies (SIGKILL, no cleanup) as it renames a file whose name ends in $KILL_AT
# into place, or, with $KILL_IN_COMPUTE, while it computes features.
KILLER = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
if os.environ.get("KILL_IN_COMPUTE"):
    from artconv.features import files as featurefiles
    featurefiles.FeatureWriter.compute = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "save":
    import torch
    from artconv.io.images import save_image
    save_image(torch.rand(3, 8, 8), sys.argv[2], recipe={"engine": "test"})
else:
    from artconv.cli import main
    main(sys.argv[1:])
"""


def killed(*args: object, kill_at: str = "(never)", in_compute: bool = False) -> None:
    env = dict(os.environ, KILL_AT=kill_at, KILL_IN_COMPUTE="1" if in_compute else "")
    proc = subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("kill_at", [".jpg.json", ".jpg"])
def test_a_kill_between_image_and_recipe_never_leaves_an_image_alone(tmp_path, kill_at):
    out = tmp_path / "x.jpg"
    killed("save", out, kill_at=kill_at)
    assert not out.exists()  # the image lands last
    assert output_complete(out) is False


@pytest.mark.parametrize("memmap", ["never", "always"])
def test_a_kill_between_array_and_recipe_never_leaves_an_array_alone(tmp_path, image_file,
                                                                     backbone_file, memmap):
    out = tmp_path / "f.npy"
    killed("features", image_file, "-l", "r1", "-o", out, "--memmap", memmap, "--backbone",
           f"{backbone_file}:build", "--device", "cpu", "--precision", "fp32", "-q",
           kill_at=".npy.json")
    assert not out.exists() and not output_complete(out)


# -- 4. temporaries of killed writers are swept -------------------------------------------------
def test_a_killed_memmapped_write_leaves_a_temporary_the_next_run_sweeps(cli, tmp_path,
                                                                         image_file,
                                                                         backbone_file):
    out = tmp_path / "f.npy"
    killed("features", image_file, "-l", "r1", "-o", out, "--memmap", "always", "--backbone",
           f"{backbone_file}:build", "--device", "cpu", "--precision", "fp32", "-q",
           in_compute=True)
    assert [p.name for p in tmp_path.glob(".f.npy.*.tmp")]  # what the kill leaves
    planted = [tmp_path / ".f.npy.json.abcd1234.tmp", tmp_path / ".f.npy.zz9.npy.tmp"]
    unrelated = tmp_path / ".other.npy.abcd1234.tmp"
    for p in [*planted, unrelated]:
        p.write_bytes(b"left over")
    code, err = cli(image_file, "-l", "r1", "-o", out)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [unrelated.name]
    assert output_complete(out) and np.load(out).shape[0] == 8


# -- 10. the pixel limit setting ----------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "0", "-1", "nan", "abc", "0.5"])
def test_a_bad_pixel_limit_is_one_line_naming_the_variable_and_value(tmp_path, monkeypatch,
                                                                    value):
    path = make_image(tmp_path / "a.png")
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", value)
    with pytest.raises(ArtconvError) as err:
        load_image(path)
    message = str(err.value)
    assert message.startswith(f"ARTCONV_MAX_PIXELS={value!r}: ") and "\n" not in message


def test_a_bad_pixel_limit_in_a_command_is_one_line(cli, tmp_path, image_file, monkeypatch):
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "inf")
    code, err = cli(image_file, "-l", "r1", "-o", tmp_path / "f.npy")
    one_line_error(code, err, "ARTCONV_MAX_PIXELS='inf'")


# -- 13. named pipes and other special files ----------------------------------------------------
@contextmanager
def must_not_hang(seconds: float = 20) -> Iterator[None]:
    """Reading a FIFO nobody writes blocks forever; turn that into a failure."""

    def hung(*_args):
        raise TimeoutError("hung reading a named pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("reader", ["load_image", "image_hw", "read_recipe", "list_images"])
def test_a_named_pipe_as_an_image_is_refused_not_read(fifo, reader):
    with must_not_hang(), pytest.raises(ArtconvError) as err:
        getattr(imageio, reader)(fifo)
    assert str(err.value) == f"{fifo}: is a named pipe (FIFO), not a regular file"


def test_a_named_pipe_as_a_recipe_or_preset_is_refused(tmp_path, monkeypatch):
    from artconv.io.recipe import read_any_recipe
    from artconv.presets import find_preset

    os.mkfifo(tmp_path / "r.json")
    os.mkfifo(tmp_path / "p.toml")
    with must_not_hang():
        with pytest.raises(ArtconvError, match="r.json: is a named pipe"):
            read_any_recipe(tmp_path / "r.json")
        with pytest.raises(ArtconvError, match="p.toml: is a named pipe"):
            find_preset(str(tmp_path / "p.toml"))
        monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
        with pytest.raises(ArtconvError, match="p.toml: is a named pipe"):
            find_preset("p")


def test_a_named_pipe_given_to_a_command_is_one_line(cli, fifo, tmp_path):
    with must_not_hang():
        code, err = cli(fifo, "-l", "r1", "-o", tmp_path / "f.npy")
    one_line_error(code, err, str(fifo), "named pipe")


# -- 14. huge images are shrunk before they become floats ---------------------------------------
@pytest.fixture
def float_shapes(monkeypatch) -> list[tuple[int, ...]]:
    """Every shape that reaches the float conversion."""
    seen: list[tuple[int, ...]] = []
    real = imageio._channels_to_rgb

    def record(chw, name):
        seen.append(tuple(chw.shape))
        return real(chw, name)

    monkeypatch.setattr(imageio, "_channels_to_rgb", record)
    return seen


def test_a_huge_declared_image_never_becomes_a_full_size_float(tmp_path, float_shapes):
    path = tmp_path / "bomb.png"
    Image.new("P", (4000, 3000), 7).save(path, optimize=True)
    assert path.stat().st_size < 100_000
    out = load_image(path, 32)
    assert out.shape == (3, 24, 32)
    assert max(max(s[1:]) for s in float_shapes) <= 4 * 32


@pytest.mark.parametrize("ext, mode, size", [(".png", "RGB", 48), (".png", "RGBA", 40),
                                             (".jpg", "RGB", 64), (".png", "L", 50),
                                             (".png", "I;16", 40), (".png", "P", 45)])
def test_shrinking_first_matches_resizing_the_whole_image(tmp_path, float_shapes, monkeypatch,
                                                          ext, mode, size):
    monkeypatch.setattr(imageio, "_BAND_PIXELS", 5000)  # several bands even at this size
    rgb = np.asarray(Image.open(make_image(tmp_path / "base.png", (400, 300))))
    if mode == "RGBA":  # hidden colour under transparent pixels must not bleed out
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
        alpha[:, :200] = 0
        rgb = rgb.copy()
        rgb[:, :200] = (255, 0, 0)
        img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    elif mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 251 + 7)
    elif mode == "P":  # a palette with one transparent entry
        img = Image.fromarray(rgb).quantize(64)
        img.info["transparency"] = 0
    else:
        img = Image.fromarray(rgb).convert(mode)
    path = tmp_path / f"img{ext}"
    img.save(path, quality=95) if ext == ".jpg" else img.save(path)
    fast = load_image(path, size)
    assert max(max(s[1:]) for s in float_shapes) <= 4 * size
    whole = resize_longest(load_image(path), size)
    assert fast.shape == whole.shape
    assert (fast - whole).abs().mean() < 2 / 255
    assert (fast - whole).abs().max() < 24 / 255


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_shrinking_never_changes_the_output_size_by_rounding(tmp_path, ext):
    """1234x96 at 32 px is 32x2 (2.49 rounds down); a 62x5 shrunk copy would round to 32x3.
    Plans made from the header (image_hw) must match what loads."""
    path = tmp_path / f"strip{ext}"
    Image.new("RGB", (1234, 96), (200, 100, 50)).save(path)
    whole = resize_longest(load_image(path), 32)
    assert load_image(path, 32).shape == whole.shape == (3, 2, 32)


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_orientation_survives_shrinking(tmp_path, ext):
    path = tmp_path / f"turned{ext}"
    img = Image.fromarray(np.asarray(Image.open(make_image(tmp_path / "b.png", (400, 200)))))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned a quarter
    img.save(path, exif=exif)
    assert load_image(path, 50).shape == (3, 50, 25)
    assert load_image(path).shape == (3, 400, 200)
    assert imageio.image_hw(path) == (400, 200)  # the header agrees


def test_a_pil_image_given_directly_is_not_changed_by_shrinking():
    img = Image.new("RGB", (400, 300), (10, 20, 30))
    assert load_image(img, 32).shape == (3, 24, 32) and img.size == (400, 300)


# -- 15. messages that tell the truth -----------------------------------------------------------
def test_the_disk_space_message_states_the_margin_it_adds(cli, tmp_path, image_file,
                                                          monkeypatch):
    from artconv.features import files as featurefiles

    # More free than the array itself (184.3 KB), less than array plus margin.
    monkeypatch.setattr(featurefiles.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 600_000, 600_000))
    code, err = cli(image_file, "-l", "r1,r3", "-o", tmp_path / "new" / "f.npy")
    one_line_error(code, err, "needs 184.3 KB on disk plus 1.0 MB to spare",
                   "only 600.0 KB is free", f"free in {tmp_path};")


def test_the_input_overwrite_message_names_the_input_not_an_option(tmp_path):
    src = make_image(tmp_path / "in.png")
    alias = tmp_path / "alias.png"
    alias.hardlink_to(src)
    with pytest.raises(ArtconvError) as err:
        save_image(torch.rand(3, 8, 8), alias, inputs=[src])
    message = str(err.value)
    assert message.startswith(f"{alias}: refusing to overwrite an input image ({src})")
    assert "choose another output path" in message and " -o" not in message


def test_only_artconvs_own_clip_record_makes_a_work_folder(tmp_path):
    """A clip generator's own `clip.json` beside its clip (as ../shared/video/make_clip.py
    writes) must not make that folder artconv's: writes there are the user's to make."""
    from artconv.errors import ArtconvError
    from artconv.outputs import check_write_paths

    (tmp_path / "clip.json").write_text('{"frames": [{"affine": [1, 0, 0]}], "disc": {}}')
    check_write_paths([("--report", tmp_path / "report.json")])  # not refused
    (tmp_path / "clip.json").write_text('{"engine": "dream", "inputs": [], "options": {}}')
    with pytest.raises(ArtconvError, match="work folder"):
        check_write_paths([("--report", tmp_path / "report.json")])
