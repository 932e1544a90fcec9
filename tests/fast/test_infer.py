"""Using a trained network: the fast engine, `stylize(model=)`, `artconv style --model`,
`artconv batch style --model`; one-line refusals that write nothing."""

from __future__ import annotations

import json

import pytest
import torch

import artconv
from artconv import registry
from artconv.errors import ArtconvError
from artconv.fast.engine import FastStyle
from artconv.fast.options import FastOptions
from artconv.io import color
from artconv.io.images import load_image, read_recipe
from artconv.outputs import file_sha256
from tests.conftest import make_image, run_cli
from tests.fast.fast_models import tiny_model, tiny_net


@pytest.fixture
def model(tmp_path):
    return tiny_model(tmp_path / "tiny.safetensors", width=4, blocks=2)


def _engine(model, **options) -> FastStyle:
    return FastStyle(FastOptions(model=str(model), device="cpu", precision="fp32", **options))


def test_engine_is_the_network_at_the_output_size(model):
    photos = torch.rand(3, 3, 40, 30)
    out = _engine(model).run(photos)
    with torch.no_grad():
        assert torch.equal(out, tiny_net(4, 2)(photos))
    small = _engine(model, size=20).run(photos)
    assert small.shape == (3, 3, 20, 15)


def test_photos_per_pass_only_changes_memory_not_the_result(model):
    photos = torch.rand(3, 3, 24, 24)
    steps = []
    out = _engine(model, per_pass=2).run(photos, callback=steps.append)
    torch.testing.assert_close(out, _engine(model).run(photos), atol=1e-4, rtol=0)
    assert [(s.step, s.steps) for s in steps] == [(1, 2), (2, 2)]
    assert "photos/s" in steps[-1].figures


def test_preserve_colors_keeps_the_photos_chroma(model):
    photo = load_image(make_image(model.parent / "p.png", (48, 40)))[None]
    out = _engine(model, preserve_colors="luminance").run(photo)
    plain = _engine(model).run(photo)
    inside = ((out > 0.02) & (out < 0.98)).all(1, keepdim=True)  # where no clamp acted
    yiq, want = color.rgb_to_yiq(out), color.rgb_to_yiq(photo)
    assert torch.allclose(yiq[:, 1:][inside.expand(-1, 2, -1, -1)],
                          want[:, 1:][inside.expand(-1, 2, -1, -1)], atol=1e-4)
    torch.testing.assert_close(color.luminance(out)[inside], color.luminance(plain)[inside],
                               atol=1e-4, rtol=0)


def test_stylize_with_model_returns_a_picture(model, tmp_path):
    photo = make_image(tmp_path / "photo.png", (60, 40))
    picture = artconv.stylize(photo, model=str(model), size=30, precision="fp32")
    assert picture.size == (30, 20)
    with pytest.raises(ArtconvError, match="not both"):
        artconv.stylize(photo, photo, model=str(model))
    with pytest.raises(ArtconvError, match="--iterations: does not apply with --model"):
        artconv.stylize(photo, model=str(model), iterations=(3,))


def test_cli_writes_the_picture_with_a_recipe_naming_the_model(model, tmp_path, capsys):
    photo = make_image(tmp_path / "photo.png", (48, 40))
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(["style", str(photo), "--model", str(model), "-o", str(out),
                                 "--precision", "fp32", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["sha256"] == file_sha256(model)
    recipe = read_recipe(out)
    assert recipe["engine"] == "fast" and recipe["options"]["model"] == str(model)
    assert recipe["model"]["sha256"] == file_sha256(model)
    assert recipe["model"]["recipe"] == {"engine": "train", "seed": 0}  # its training recipe
    assert recipe["inputs"] == [str(photo)]
    with torch.no_grad():
        want = tiny_net(4, 2)(load_image(photo)[None])[0]
    assert (load_image(out) - want).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("args, message", [
    (["STYLE.png"], "STYLE.png: a style argument and --model: the model is the style"),
    (["--iterations", "5"], "--iterations: does not apply with --model"),
    (["--save-every", "2"], "--save-every: does not apply with --model"),
    (["--preserve-colors", "histogram"], "--preserve-colors 'histogram': choose one of"),
])
def test_cli_refuses_in_one_line_and_writes_nothing(model, tmp_path, capsys, args, message):
    photo = make_image(tmp_path / "photo.png", (32, 32))
    if "STYLE.png" in args:
        make_image(tmp_path / "STYLE.png", (32, 32))
        args = [str(tmp_path / "STYLE.png")]
    before = sorted(tmp_path.iterdir())
    code, _, err = run_cli(["style", str(photo), *args, "--model", str(model), "-o",
                            str(tmp_path / "out.png")], capsys)
    assert code != 0 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before


def test_cli_refuses_bad_models_and_never_writes_over_an_input(model, tmp_path, capsys):
    photo = make_image(tmp_path / "photo.png", (32, 32))
    text = tmp_path / "notes.safetensors"
    text.write_text("not a model")
    original = photo.read_bytes()
    for given, message in [(tmp_path / "gone.safetensors", "gone.safetensors: no such model"),
                           (text, "notes.safetensors: not an artconv style model"),
                           ("vangogh", "--model vangogh: no such model file, and not a "
                                       "published model's name")]:
        code, _, err = run_cli(["style", str(photo), "--model", str(given), "-o",
                                str(tmp_path / "out.png")], capsys)
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(["style", str(photo), "--model", str(model), "-o", str(photo)],
                           capsys)
    assert code != 0 and "photo.png" in err
    assert photo.read_bytes() == original
    assert not (tmp_path / "out.png").exists()


def test_ctrl_c_inside_the_pass_writes_nothing(model, tmp_path, capsys, monkeypatch):
    from artconv.progress import Progress

    def on_step(self, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "on_step", on_step)
    photo = make_image(tmp_path / "photo.png", (32, 32))
    code, _, err = run_cli(["style", str(photo), "--model", str(model), "-o",
                            str(tmp_path / "out.png"), "--tile", "64"], capsys)
    assert code == 130 and "nothing written" in err
    assert not (tmp_path / "out.png").exists()


def test_batch_style_with_model_runs_the_fast_engine(model, tmp_path, capsys):
    for i in range(3):
        make_image(tmp_path / "photos" / f"p{i}.png", (40, 32), seed=i)
    code, stdout, err = run_cli(["batch", "style", str(tmp_path / "photos" / "*.png"),
                                 "--model", str(model), "--out-dir", str(tmp_path / "out"),
                                 "--batch-size", "2", "--precision", "fp32"], capsys)
    assert code == 0, err
    assert "3 done" in err and "per second" in err
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == ["p0_fast.png", "p1_fast.png", "p2_fast.png"]
    assert read_recipe(outputs[0])["engine"] == "fast"
    code, _, err = run_cli(["batch", "style", str(tmp_path / "photos" / "*.png"), "--model",
                            str(model), "--styles", str(tmp_path / "photos" / "p0.png")],
                           capsys)
    assert code != 0 and "--styles and --model" in err


def test_a_batch_loads_no_loss_network_for_it(model, tmp_path):
    from artconv import batch

    photos = [make_image(tmp_path / f"p{i}.png", (32, 32), seed=i) for i in range(2)]
    jobs = batch.plan("fast", photos, out_dir=tmp_path / "out")
    runner = batch.LocalRunner()
    report = batch.render(jobs, {"fast": FastOptions(model=str(model), precision="fp32")},
                          runner=runner, batch_size=2)
    assert report.count("done") == 2
    assert runner.stats.get("networks_loaded", 0) == 0
    assert registry.get("fast").network is False


def test_a_manifest_style_job_with_a_model_is_a_fast_job(model, tmp_path):
    from artconv import batch

    photo = make_image(tmp_path / "photo.png", (32, 32))
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "style", "input": photo.name,
                                    "options": {"model": str(model)}}) + "\n")
    (job,) = batch.read_manifest(manifest)
    assert job.engine == "fast" and job.output == str(tmp_path / "photo_fast.png")
    assert batch.render([job]).count("done") == 1
    manifest.write_text(json.dumps({"engine": "style", "input": photo.name,
                                    "styles": [photo.name], "options": {"model": "m"}}) + "\n")
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:1: 'styles' and option 'model'"):
        batch.read_manifest(manifest)


def test_the_studio_form_takes_published_names_only():
    from artconv.web.forms import browser_options

    assert browser_options("fast", {"model": "candy", "size": 256}) == {"model": "candy",
                                                                        "size": 256}
    with pytest.raises(ArtconvError, match="model"):
        browser_options("fast", {"model": "/home/someone/private.safetensors"})
