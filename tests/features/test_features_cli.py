"""`artconv features` end to end (in-process, tiny own backbone): array formats read back,
pictures, many images with a shared PCA basis, memory-mapped output, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.cli import main
from artconv.features import pixel_features
from artconv.io.images import read_recipe
from tests.conftest import make_image, run_cli


@pytest.fixture
def run(capsys, backbone_file):
    """`run(*args)` -> (exit code, stdout, stderr) of `artconv features ... --backbone`."""

    def _run(*args: str, quiet: bool = True) -> tuple[int, str, str]:
        argv = ["features", *map(str, args), "--backbone", f"{backbone_file}:build",
                "--precision", "fp32", "--device", "cpu"] + (["-q"] if quiet else [])
        code, out, err = run_cli(argv, capsys)
        return code, out, err if code else " ".join(err.split())  # rich wraps long lines

    return _run


def two_regions(path: Path, size: tuple[int, int] = (64, 40), right=(0, 0, 255)) -> Path:
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = right
    Image.fromarray(a).save(path)
    return path


def api(image: Path, backbone_file: Path, **kw) -> torch.Tensor:
    return pixel_features(image, ["r1", "r3"], backbone=f"{backbone_file}:build",
                          precision="fp32", device="cpu", **kw)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for f in fragments:
        assert f in lines[0], lines[0]


# -- arrays --------------------------------------------------------------------------------------
def read_back(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path))
    if path.suffix == ".npz":
        return torch.from_numpy(np.load(path)["features"])
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)["features"]
    from safetensors.torch import load_file

    return load_file(path)["features"]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors"])
def test_writes_each_array_format_readable_back(run, tmp_path, image_file, backbone_file,
                                                suffix):
    out = tmp_path / f"feats{suffix}"
    code, _, _ = run(image_file, "-l", "r1,r3", "-o", out)
    assert code == 0
    back = read_back(out)
    assert back.shape == (8 + 16, 40, 48) and back.dtype == torch.float32
    torch.testing.assert_close(back, api(image_file, backbone_file))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temps


def test_short_s_is_size(run, tmp_path, image_file):
    code, _, err = run(image_file, "-l", "r1", "-s", "24", "-o", tmp_path / "f.npy")
    assert code == 0, err
    assert np.load(tmp_path / "f.npy").shape == (8, 20, 24)


def test_array_metadata_names_every_channel_range(run, tmp_path, image_file):
    run(image_file, "-l", "r1,r3", "-o", tmp_path / "f.npy")
    meta = json.loads((tmp_path / "f.npy.json").read_text())
    layers = meta["features"]["layers"]
    assert [(x["name"], x["start"], x["stop"]) for x in layers] == [("r1", 0, 8), ("r3", 8, 24)]
    assert meta["engine"] == "features" and meta["precision"] == "fp32"
    from safetensors import safe_open

    run(image_file, "-l", "r1,r3", "-o", tmp_path / "f.safetensors")
    with safe_open(tmp_path / "f.safetensors", "pt") as fh:
        assert json.loads(fh.metadata()["artconv"])["features"]["layers"] == layers


def test_dtype_float16_and_the_printed_shape_and_size(run, tmp_path, image_file):
    out = tmp_path / "f.npy"
    code, _, err = run(image_file, "-l", "r1,r3", "-o", out, "--dtype", "float16", quiet=False)
    assert code == 0 and "(24, 40, 48) float16" in err and "92.2 KB" in err
    assert np.load(out).dtype == np.float16


def test_upsample_none_writes_one_map_per_layer(run, tmp_path, image_file):
    code, _, _ = run(image_file, "-l", "r1,r3", "--upsample", "none", "-o", tmp_path / "m.npz")
    assert code == 0
    maps = np.load(tmp_path / "m.npz")
    assert maps["r1"].shape == (8, 40, 48) and maps["r3"].shape == (16, 10, 12)
    code, _, err = run(image_file, "--upsample", "none", "-l", "r1", "-o", tmp_path / "m.npy")
    assert_one_line_error(code, err, "m.npy", "one map per layer")


def test_memmapped_npy_equals_the_in_memory_result(run, tmp_path, image_file):
    code, _, _ = run(image_file, "-l", "r1,r3", "--memmap", "always", "--tile", "16",
                     "-o", tmp_path / "mm.npy", "--pca", tmp_path / "mm.png")
    assert code == 0
    run(image_file, "-l", "r1,r3", "-o", tmp_path / "ram.npy")
    np.testing.assert_allclose(np.load(tmp_path / "mm.npy"), np.load(tmp_path / "ram.npy"),
                               rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py") == [
        "content.png", "mm.npy", "mm.npy.json", "mm.png", "ram.npy", "ram.npy.json"]


def test_a_full_disk_is_refused_with_the_size_needed(run, tmp_path, image_file, monkeypatch):
    from artconv.features import files as featurefiles

    monkeypatch.setattr(featurefiles.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code, _, err = run(image_file, "-l", "r1,r3", "-o", tmp_path / "f.npy")
    assert_one_line_error(code, err, "f.npy", "needs 184.3 KB on disk plus 1.0 MB to spare",
                          "only 1.0 KB is free")
    assert not (tmp_path / "f.npy").exists()


def test_features_that_must_be_in_ram_and_cannot_fit_are_refused_before_allocation(
        run, tmp_path, image_file, monkeypatch):
    """--memmap never (or --upsample none maps) of a 100 MP image allocated 20 GB and more."""
    from artconv.features import files as featurefiles

    monkeypatch.setattr(featurefiles, "available_ram", lambda: 100_000)
    monkeypatch.setattr(featurefiles, "allocate", lambda plan: pytest.fail("allocated"))
    code, _, err = run(image_file, "-l", "r1,r3", "--memmap", "never", "-o", tmp_path / "f.npy")
    assert_one_line_error(code, err, "f.npy: the features need 184.3 KB", "in RAM but only "
                          "100.0 KB is available", "--memmap auto")
    monkeypatch.setattr(featurefiles, "available_ram", lambda: 50_000)  # the maps: 69 KB
    code, _, err = run(image_file, "-l", "r1,r3", "--upsample", "none", "-o",
                       tmp_path / "m.npz")
    assert code != 0 and "m.npz: the features need" in err and "--memmap auto" not in err
    assert not list(tmp_path.glob("*.np*"))


def test_too_big_for_ram_writes_npy_memory_mapped_and_refuses_pt(run, tmp_path, image_file,
                                                                 monkeypatch):
    from artconv.features import files as featurefiles

    monkeypatch.setattr(featurefiles, "available_ram", lambda: 100_000)
    code, _, err = run(image_file, "-l", "r1,r3", "-o", tmp_path / "f.pt")
    assert_one_line_error(code, err, "f.pt", "only 100.0 KB of RAM", "write .npy")
    assert run(image_file, "-l", "r1,r3", "-o", tmp_path / "f.npy")[0] == 0
    assert np.load(tmp_path / "f.npy").shape == (24, 40, 48)


# -- pictures ------------------------------------------------------------------------------------
def rgb_at(path: Path, x: int, y: int) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float64)[y, x] / 255


def test_pca_picture_of_two_regions_has_two_colours_and_a_recipe(run, tmp_path):
    image = two_regions(tmp_path / "two.png")
    code, _, _ = run(image, "-l", "r1,r3", "--pca", tmp_path / "pca.png")
    assert code == 0
    left, right = rgb_at(tmp_path / "pca.png", 16, 20), rgb_at(tmp_path / "pca.png", 48, 20)
    assert np.linalg.norm(left - right) > 0.5
    recipe = read_recipe(tmp_path / "pca.png")
    assert recipe["picture"] == "pca" and len(recipe["pca"]["explained_variance"]) == 3


def test_similarity_heat_map(run, tmp_path):
    image = two_regions(tmp_path / "two.png")
    code, _, _ = run(image, "-l", "r1,r3", "--similar-to", "16,20", "-o", tmp_path / "heat.png")
    assert code == 0
    heat = tmp_path / "heat.png"
    assert Image.open(heat).size == (64, 40)
    assert rgb_at(heat, 10, 30).sum() > rgb_at(heat, 50, 30).sum() + 0.5  # own region brighter
    assert read_recipe(heat)["point"] == [16, 20]


def test_similar_to_point_is_in_the_files_pixels_when_resized(run, tmp_path):
    image = two_regions(tmp_path / "two.png")
    code, _, _ = run(image, "--size", "32", "-l", "r1,r3", "--similar-to", "60,38",
                     "-o", tmp_path / "heat.png")
    assert code == 0
    assert read_recipe(tmp_path / "heat.png")["point_in_features"] == [30, 19]


def test_many_images_with_out_dir_and_a_shared_pca_basis(run, tmp_path):
    (tmp_path / "in").mkdir()
    two_regions(tmp_path / "in" / "a.png")
    two_regions(tmp_path / "in" / "b.png", right=(255, 0, 0))  # all red
    code, _, err = run(str(tmp_path / "in" / "*.png"), "-l", "r1,r3", "--out-dir",
                       tmp_path / "out", "--pca-shared")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a.npy", "a.npy.json", "a.pca.png", "b.npy", "b.npy.json", "b.pca.png"]
    assert read_recipe(tmp_path / "out" / "b.pca.png")["pca"]["shared_over"] == 2
    # One basis: b's red pixels get the colour of a's red half.
    red_a = rgb_at(tmp_path / "out" / "a.pca.png", 16, 20)
    red_b = rgb_at(tmp_path / "out" / "b.pca.png", 48, 20)
    blue_a = rgb_at(tmp_path / "out" / "a.pca.png", 48, 20)
    assert np.linalg.norm(red_a - red_b) < 0.1 < np.linalg.norm(blue_a - red_b)


def test_nothing_to_write_prints_the_shape_and_size(run, tmp_path, image_file):
    code, _, err = run(image_file, "-l", "r1,r3", quiet=False)
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["content.png",
                                                                        "mynet.py"]
    assert "(24, 40, 48) float32" in err and "184.3 KB" in err and "nothing written" in err


# -- errors --------------------------------------------------------------------------------------
def test_unknown_layer(run, tmp_path, image_file):
    code, _, err = run(image_file, "-l", "r1,nope", "-o", tmp_path / "f.npy")
    assert_one_line_error(code, err, "unknown layer 'nope'", "valid: c1, r1")


@pytest.mark.parametrize("point", ["48,0", "0,40", "5"])
def test_point_outside_the_image(run, tmp_path, image_file, point):
    code, _, err = run(image_file, "--similar-to", point, "-o", tmp_path / "h.png")
    assert_one_line_error(code, err, "--similar-to")
    assert "outside" in err or "expected X,Y" in err


def test_unwritable_output_fails_before_any_work(run, tmp_path, image_file):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code, _, err = run(image_file, "-o", blocker / "sub" / "f.npy")
    assert_one_line_error(code, err, "-o", "f.npy", f"{blocker} is not a folder")


@pytest.mark.parametrize("args, fragments", [
    (["-o", "f.txt"], ["f.txt", "unknown format"]),
    (["-o", "h.png"], ["h.png", "--similar-to"]),
    (["--similar-to", "1,1"], ["--similar-to", "-o HEAT.png"]),
    (["--pca", "p.npy"], ["--pca", "p.npy: must be an image file"]),
    (["--pca-shared"], ["--pca-shared"]),
])
def test_bad_output_combinations(run, tmp_path, image_file, args, fragments):
    args = [str(tmp_path / a) if "." in a and not a[0].isdigit() else a for a in args]
    code, _, err = run(image_file, *args)
    assert_one_line_error(code, err, *fragments)


def test_several_images_need_stem_in_the_output_name(run, tmp_path):
    for i in range(2):
        make_image(tmp_path / f"p{i}.png", seed=i)
    code, _, err = run(tmp_path / "p0.png", tmp_path / "p1.png", "-o", tmp_path / "f.npy")
    assert_one_line_error(code, err, "2 images would all write it", "{stem}")
    code, _, _ = run(tmp_path / "p0.png", tmp_path / "p1.png", "-l", "r1",
                     "-o", tmp_path / "{stem}.pt")
    assert code == 0 and (tmp_path / "p0.pt").is_file() and (tmp_path / "p1.pt").is_file()


def test_several_images_one_bad_fails_alone(run, tmp_path, image_file):
    bad = tmp_path / "bad.png"
    bad.write_bytes(image_file.read_bytes()[:50])
    good2 = tmp_path / "second.png"
    good2.write_bytes(image_file.read_bytes())
    code, out, err = run(image_file, bad, good2, "-l", "r1", "--out-dir", tmp_path / "feats")
    assert code == 1 and "Traceback" not in err and "bad.png" in err
    assert sorted(p.name for p in (tmp_path / "feats").glob("*.npy")) == [
        "content.npy", "second.npy"]


def test_an_output_that_is_the_input_is_refused_before_any_work(run, tmp_path, image_file,
                                                               monkeypatch):
    from artconv.features import files as featurefiles

    def no_compute(*_args, **_kwargs):
        raise AssertionError("features computed before the output check")

    monkeypatch.setattr(featurefiles.FeatureWriter, "compute", no_compute)
    before = image_file.read_bytes()
    for flag, args in (("--pca", ["-o", tmp_path / "e.npy", "--pca", image_file]),
                       ("-o", ["--similar-to", "1,1", "-o", image_file])):
        code, _, err = run(image_file, "-l", "r1", *args)
        assert_one_line_error(code, err, f"{flag} {image_file}: is an input file")
    link = tmp_path / "link.png"  # the same file under another name
    link.symlink_to(image_file)
    code, _, err = run(image_file, "-l", "r1", "--pca", link)
    assert_one_line_error(code, err, "--pca", "link.png", "is an input file")
    assert image_file.read_bytes() == before
    assert not (tmp_path / "e.npy").exists()


# -- recipes -------------------------------------------------------------------------------------
def recipe_of(path: Path, capsys) -> tuple[int, dict | None, str]:
    capsys.readouterr()
    try:
        main(["recipe", str(path)])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors"])
def test_recipe_command_reads_every_array_format(run, tmp_path, image_file, capsys, suffix):
    out = tmp_path / f"feats{suffix}"
    assert run(image_file, "-l", "r1,r3", "-o", out)[0] == 0
    code, recipe, err = recipe_of(out, capsys)
    assert code == 0, err
    assert recipe["engine"] == "features" and recipe["inputs"] == [str(image_file)]
    assert [x["name"] for x in recipe["features"]["layers"]] == ["r1", "r3"]
    if suffix in (".npy", ".npz"):  # the sidecar itself, named directly
        code, direct, err = recipe_of(tmp_path / f"feats{suffix}.json", capsys)
        assert code == 0 and direct == recipe, err


def test_recipe_command_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "bare.npy", np.zeros(3, np.float32))  # no sidecar
    torch.save({"features": torch.zeros(3)}, tmp_path / "bare.pt")
    from safetensors.torch import save_file

    save_file({"features": torch.zeros(3)}, str(tmp_path / "bare.safetensors"))
    (tmp_path / "other.json").write_text('{"name": "not a recipe"}')
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    for name, fragment in [("bare.npy", "carries no artconv recipe"),
                           ("bare.pt", "carries no artconv recipe"),
                           ("bare.safetensors", "carries no artconv recipe"),
                           ("other.json", "carries no artconv recipe"),
                           ("junk.pt", "not a readable torch file"),
                           ("missing.npz", "no such file"),
                           ("missing.safetensors", "no such file")]:
        code, _, err = recipe_of(tmp_path / name, capsys)
        assert_one_line_error(code, " ".join(err.split()), name, fragment)


def test_shared_pca_over_npy_outputs_gives_no_torch_warning(tmp_path, backbone_file):
    """The shared basis re-reads each .npy read-only (np.load mmap_mode="r"); handing that
    to torch.from_numpy warned "The given NumPy array is not writable". A fresh process:
    torch shows that warning once per process."""
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    two_regions(tmp_path / "in" / "a.png")
    two_regions(tmp_path / "in" / "b.png", right=(255, 0, 0))
    proc = subprocess.run(
        [sys.executable, "-W", "error:The given NumPy array is not writable", "-m", "artconv",
         "features", str(tmp_path / "in" / "*.png"), "-l", "r1,r3", "--out-dir",
         str(tmp_path / "out"), "--pca-shared", "--backbone", f"{backbone_file}:build",
         "--precision", "fp32", "--device", "cpu", "-q"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not writable" not in proc.stderr
    assert (tmp_path / "out" / "b.pca.png").is_file()


def _mapped_kb(name_part: str) -> int:
    """Resident KB of this process's file mappings whose path contains `name_part`."""
    total, counting = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            counting = len(head) >= 6 and name_part in head[-1]
        elif counting and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux /proc")
def test_a_memory_mapped_array_is_written_tile_by_tile_not_kept_resident(
        run, tmp_path, monkeypatch):
    """A 100 MP relu1_1 array (26 GB) grew the process to 20 GB: the memory-mapped .npy
    stayed resident as it filled. Each finished tile now leaves memory for the file."""
    from artconv.features import engine as features_engine

    image = make_image(tmp_path / "big.png", (192, 192))
    resident: list[int] = []
    real = features_engine.extract_into

    def watched(*args, on_tile, **kw):
        def after(i):
            go = on_tile(i)
            resident.append(_mapped_kb(".m.npy."))
            return go
        return real(*args, on_tile=after, **kw)

    monkeypatch.setattr(features_engine, "extract_into", watched)
    code, _, err = run(image, "-l", "r1", "--memmap", "always", "--tile", "32",
                       "-o", tmp_path / "m.npy")
    assert code == 0, err
    size_kb = (tmp_path / "m.npy").stat().st_size // 1024
    assert len(resident) >= 36 and size_kb > 1000
    assert max(resident) < size_kb // 8, (max(resident), size_kb)
