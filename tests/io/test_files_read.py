"""One answer to "which files does this run read" (outputs.files_read): every command and
batch checks its writes against the same list, option-named files included."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from artconv.outputs import files_read
from tests.conftest import run_cli


def test_files_read_lists_images_and_every_file_an_option_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("in.png", "mask.png", "w.pt", "net.py"):
        Path(name).write_bytes(b"x")
    options = {"weights": "w.pt", "backbone": "net.py:build", "masks": ("mask.png", "gone.png"),
               "init": "content", "layers": "relu4_2:-1:", "size": 64, "guide": None}
    assert files_read(["in.png", None], [options, {"weights": "w.pt"}]) == [
        Path("in.png"), Path("w.pt"), Path("net.py"), Path("mask.png")]


@pytest.mark.parametrize(("command", "label"), [
    (["style", "in.png", "in.png", "--weights", "w.png", "-o", "w.png"], "--output"),
    (["dream", "in.png", "--weights", "w.png", "-o", "w.png"], "--output"),
    (["features", "in.png", "--weights", "w.png", "--pca", "w.png"], "--pca"),
])
def test_no_command_writes_over_a_file_an_option_names(command, label, tmp_path,
                                                        monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 32), (9, 9, 9)).save("in.png")
    Image.new("RGB", (32, 32)).save("w.png")
    before = Path("w.png").read_bytes()
    code, _, err = run_cli(command, capsys)
    assert code == 2
    assert err.strip() == (f"error: {label} w.png: is an input file; refusing to overwrite "
                           "it (choose another path)")
    assert Path("w.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "w.png"]


def test_a_clip_is_never_written_over_a_file_an_option_names(tmp_path, capsys):
    pytest.importorskip("av")
    from tests.video.clips import frames, write_clip

    clip = write_clip(tmp_path / "c.mp4", frames(2, (32, 40)), fps=8, audio=False)
    weights = write_clip(tmp_path / "w.mp4", frames(2, (32, 40)), fps=8, audio=False)
    before = weights.read_bytes()
    code, _, err = run_cli(["dream", str(clip), "--weights", str(weights), "-o", str(weights)],
                           capsys)
    assert code == 2 and f"output {weights}: is an input file" in err, err
    assert weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "w.mp4"]
