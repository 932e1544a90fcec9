"""Training fast style networks (`artconv.fast.train`, `artconv train`): the loss really
falls on held-out crops, a stopped or killed run resumes to the very weights of an
uninterrupted one, other options refuse to resume, bad input is one line, and the model
carries its recipe. Tiny everything: 32 px crops, a width-4/8 network with one block, the
tests' own three-conv loss network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from artconv.engine import Interrupted
from artconv.errors import ArtconvError
from artconv.fast import data
from artconv.fast.train import Trainer, train
from artconv.fast.train_options import TrainOptions
from artconv.io.images import load_image
from artconv.io.sheet import label_font
from artconv.outputs import file_sha256
from tests.conftest import BACKBONE_SOURCE, make_image, run_cli
from tests.io.test_urls import Route, server  # noqa: F401 - the local HTTP server fixture

ROOT = Path(__file__).resolve().parents[2]


def training_setup(folder: Path, photos: int, **options: Any
                   ) -> tuple[TrainOptions, Path, list[str], Path]:
    """(options, style path, photo paths, folder): `photos` small photos, a style and the
    tiny loss network written into `folder`; `options` override the tiny training record."""
    net = folder / "lossnet.py"
    net.write_text(BACKBONE_SOURCE)
    paths = [str(make_image(folder / "photos" / f"p{i:02d}.png", (48, 40), seed=i))
             for i in range(photos)]
    style = make_image(folder / "style.png", (40, 40), seed=99)
    opts = TrainOptions(backbone=f"{net}:build", content_layers=("r2",),
                        style_layers=("r1", "r2"), precision="fp32", device="cpu", crop=32,
                        width=4, blocks=1, **options)
    return opts, style, paths, folder


@pytest.fixture
def setup(tmp_path):
    """12 photos, a style, the tiny backbone (`training_setup`)."""
    return training_setup(tmp_path, 12, batch_size=2, holdout=2, steps=12,
                          checkpoint_every=4)


def cli_args(opts: TrainOptions, style: Path, folder: Path, output: Path) -> list[str]:
    args = ["train", str(style), "--images", str(folder / "photos"), "-o", str(output)]
    for key in ("backbone", "content_layers", "style_layers", "precision", "device", "crop",
                "width", "blocks", "batch_size", "holdout", "steps", "checkpoint_every"):
        value = getattr(opts, key)
        args += [f"--{key.replace('_', '-')}",
                 ",".join(value) if isinstance(value, tuple) else str(value)]
    return args


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_a_few_dozen_steps_lower_the_loss_on_held_out_crops(setup):
    opts, style, photos, _ = setup
    usable, _ = data.scan(photos)
    train_set, held = data.split(usable, 2)
    crops = torch.stack([data.center_crop(data.load_photo(p, 32), 32) for p in held])
    trainer = Trainer(opts.replace(width=8, batch_size=4))
    trainer.set_styles([load_image(style)])
    before = trainer.evaluate(crops)
    batches = data.PhotoSet(train_set, crop=32, batch_size=4, seed=0)
    for step in range(40):
        trainer.step(batches.batch(step))
    after = trainer.evaluate(crops)
    assert after.shape == (3, 2)
    # the total on photos it never saw falls to well under half, and the style row with it
    assert after.sum(0).mean() < 0.5 * before.sum(0).mean()
    assert after[1].mean() < 0.5 * before[1].mean()


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(setup):
    opts, style, photos, tmp = setup
    whole = train(opts, [style], photos, tmp / "whole.safetensors")
    assert whole.done == 12 and whole.heldout == 2 and whole.photos == 10

    def stop_at_5(step):
        return step.done < 5

    first = train(opts, [style], photos, tmp / "parts.safetensors", callback=stop_at_5)
    assert first.stopped and first.done == 5
    recipe = json.loads(_header(tmp / "parts.safetensors")["artconv"])
    assert recipe["steps"] == 5 and recipe["interrupted"] is True
    lines = []
    rest = train(opts, [style], photos, tmp / "parts.safetensors", log=lines.append)
    assert rest.done == 12 and "resuming parts.safetensors at step 5 of 12" in lines
    assert same_weights(tmp / "whole.safetensors", tmp / "parts.safetensors")
    # the loss curve is the same run too
    csv = [(tmp / f"{n}.safetensors.train" / "losses.csv").read_text().splitlines()
           for n in ("whole", "parts")]
    assert len(csv[0]) == 13 and [r.split(",")[:5] for r in csv[0]] == \
        [r.split(",")[:5] for r in csv[1]]
    # more steps continue the same run: resuming with a larger --steps is allowed
    more = train(opts.replace(steps=14), [style], photos, tmp / "parts.safetensors")
    assert more.done == 14


def test_other_options_refuse_to_resume_in_one_line_and_nothing_is_overwritten(setup):
    opts, style, photos, tmp = setup
    out = tmp / "m.safetensors"
    train(opts, [style], photos, out, callback=lambda s: s.done < 4)
    folder = tmp / "m.safetensors.train"
    before = {p: p.read_bytes() for p in [out, *folder.rglob("*")] if p.is_file()}
    with pytest.raises(ArtconvError, match=r"m\.safetensors\.train: holds a training run "
                                           r"with other --crop: 32 \(now 48\)"):
        train(opts.replace(crop=48), [style], photos, out)
    other = make_image(tmp / "other.png", (40, 40), seed=5)
    with pytest.raises(ArtconvError, match="other styles"):
        train(opts, [other], photos, out)
    after = {p: p.read_bytes() for p in [out, *folder.rglob("*")] if p.is_file()}
    assert after == before


def test_the_model_carries_the_full_training_recipe(setup, capsys):
    opts, style, photos, tmp = setup
    broken = tmp / "photos" / "zz_broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp / "m.safetensors"
    train(opts, [style], [*photos, str(broken)], out)
    code, stdout, _ = run_cli(["recipe", str(out)], capsys)
    assert code == 0
    recipe = json.loads(stdout)
    assert recipe["engine"] == "train" and recipe["steps"] == 12
    assert recipe["options"]["crop"] == 32 and recipe["options"]["style_layers"] == ["r1", "r2"]
    assert recipe["styles"] == [{"path": str(style), "sha256": file_sha256(style)}]
    assert recipe["photos"]["count"] == 12 and recipe["photos"]["skipped"] == 1
    assert recipe["photos"]["sha256"] == data.digest(data.scan(photos)[0])
    assert str(broken) in recipe["photos_skipped"]
    assert recipe["weights"].startswith("backbone:") and recipe["torch"] == torch.__version__
    assert recipe["artconv"] and recipe["loss_weights"]["scale"] == "auto"
    assert recipe["network"] == {"net": "TransformerNet", "width": 4, "blocks": 1,
                                 "scale": 1.0}


def test_previews_grow_a_sheet_and_the_loss_curve_is_written(setup):
    opts, style, photos, tmp = setup
    train(opts.replace(preview_every=4), [style], photos, tmp / "m.safetensors")
    folder = tmp / "m.safetensors.train"
    sheet = Image.open(folder / "preview.png")
    # rows: the 2 held-out photos under a header row (the square style) and a line of
    # labels ("step 4" ...); columns: the photo + 3 previews, each as wide as its picture
    # (32 px thumb) or its label; a row is as tall as a 48x40 photo at that thumb
    row = round(32 * 40 / 48)
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), label_font(32)
    boxes = [draw.textbbox((0, 0), f"step {k}", font=font, anchor="ls") for k in (4, 8, 12)]
    band = max(-b[1] for b in boxes) + max(b[3] for b in boxes)
    width = 6 + 32 + sum(6 + max(32, b[2]) for b in boxes) + 6
    assert sheet.size == (width, 6 + band + 6 + 32 + 2 * (6 + row) + 6)
    assert len(list((folder / "preview").glob("step*.png"))) == 6
    rows = (folder / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,loss,content,style,tv,heldout"
    heldout = [r.split(",")[-1] for r in rows[1:]]
    assert [i + 1 for i, v in enumerate(heldout) if v] == [4, 8, 12]
    assert Image.open(folder / "losses.png").size == (900, 420)


def test_bad_input_is_one_line_and_writes_nothing(setup, capsys):
    opts, style, photos, tmp = setup
    out = tmp / "m.safetensors"
    not_image = tmp / "style.txt"
    not_image.write_text("a poem, not a painting")
    (tmp / "empty").mkdir()
    junk = tmp / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"j{i}.jpg").write_bytes(b"garbage")
    cases = [
        (cli_args(opts, not_image, tmp, out), "style.txt: not an image file"),
        (cli_args(opts, style, tmp, out)[:3] + [str(tmp / "empty")]
         + cli_args(opts, style, tmp, out)[4:], "empty: folder holds no image files"),
        (cli_args(opts, style, tmp, out)[:3] + [str(junk)] + cli_args(opts, style, tmp, out)[4:],
         "--images: 0 usable photo(s) of 3 (at least 2 needed); 3 could not be read, e.g. "),
        (cli_args(opts, style, tmp, out) + ["--epochs", "2"], "--steps and --epochs: give one"),
        (cli_args(opts, style, tmp, out) + ["--seamless"], "--seamless: not for training"),
        (cli_args(opts, style, tmp, tmp / "m.pt"), "a model file ends in .safetensors"),
        (cli_args(opts, style, tmp, style.with_suffix(".safetensors")) + [
            "--images", str(style.with_suffix(".safetensors"))], "is an input file"),
    ]
    style.with_suffix(".safetensors").write_bytes(b"x")  # an input named as the output
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not (tmp / "m.safetensors.train").exists()
    assert style.with_suffix(".safetensors").read_bytes() == b"x"


def _header(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return fh.metadata()


def _start(args: list[str], tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "artconv", "--debug", *args], cwd=tmp,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **({"start_new_session": True}))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no checkpoint in time"
        time.sleep(0.05)


def test_a_killed_run_loses_only_the_steps_since_its_checkpoint(setup):
    """SIGKILL mid-run, then the same command: it resumes from the last checkpoint, leaves
    no temporary file, and ends with the weights of a run never killed."""
    opts, style, photos, tmp = setup
    opts = opts.replace(steps=400, checkpoint_every=3)
    out = tmp / "killed.safetensors"
    checkpoint = tmp / "killed.safetensors.train" / "checkpoint.pt"
    proc = _start(cli_args(opts, style, tmp, out), tmp)
    _wait_for(checkpoint, proc)
    time.sleep(0.3)  # somewhere between two checkpoints, maybe while writing one
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = torch.load(checkpoint, weights_only=True)["step"]
    assert 3 <= kept < 400 and kept % 3 == 0
    done = subprocess.run([sys.executable, "-m", "artconv", *cli_args(
        opts.replace(steps=kept + 6), style, tmp, out)], cwd=tmp, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert f"resuming killed.safetensors at step {kept} of {kept + 6}" in done.stderr
    assert not temporaries(tmp)
    train(opts.replace(steps=kept + 6), [style], photos, tmp / "whole.safetensors")
    assert same_weights(out, tmp / "whole.safetensors")


def test_ctrl_c_writes_a_checkpoint_and_the_model_and_exits_130(setup):
    opts, style, photos, tmp = setup
    opts = opts.replace(steps=100000, checkpoint_every=100000)
    out = tmp / "m.safetensors"
    proc = _start(cli_args(opts, style, tmp, out), tmp)
    _wait_for(tmp / "m.safetensors.train" / "train.log", proc)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command to resume" in " ".join(err.split())
    step = torch.load(tmp / "m.safetensors.train" / "checkpoint.pt", weights_only=True)["step"]
    recipe = json.loads(_header(out)["artconv"])
    assert step >= 1 and recipe["steps"] == step and recipe["interrupted"] is True


def test_interrupted_is_raised_to_api_callers_after_saving(setup, monkeypatch):
    """Ctrl-C (the SIGINT handler's flag) in the API: the step ends, then `Interrupted`."""
    opts, style, photos, tmp = setup

    def interrupt(step):
        if step.done == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        train(opts, [style], photos, tmp / "m.safetensors", callback=interrupt)
    checkpoint = tmp / "m.safetensors.train" / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["step"] == 3


def test_styles_and_photos_by_url(setup, server, capsys):  # noqa: F811 - the fixture
    """A style given by URL and a list file naming photos by URL (one of them missing:
    skipped and named, training goes on), served from 127.0.0.1."""
    opts, style, photos, tmp = setup
    server.routes["/paint.png"] = Route(style.read_bytes())
    for i in range(3):
        server.routes[f"/photo{i}.png"] = Route(Path(photos[i]).read_bytes())
    listing = tmp / "photos.txt"
    listing.write_text("\n".join([*(f"{server.base}/photo{i}.png" for i in range(3)),
                                  f"{server.base}/gone.png", "photos/p05.png",
                                  "photos/p06.png"]) + "\n")
    out = tmp / "web.safetensors"
    args = cli_args(opts.replace(steps=2, holdout=0), style, tmp, out)
    args[1], args[3] = f"{server.base}/paint.png", str(listing)
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"skipped {server.base}/gone.png:" in " ".join(err.split())
    recipe = json.loads(_header(out)["artconv"])
    assert recipe["styles"] == [{"path": f"{server.base}/paint.png",
                                 "sha256": file_sha256(style)}]
    assert recipe["photos"]["count"] == 5 and recipe["photos"]["skipped"] == 1
