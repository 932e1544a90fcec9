"""The one engine contract (artconv/engine.py), checked on every engine in the registry:
run a batch, stream step records, stop from the callback, hand back the image on Ctrl-C,
and make the same recipe whether a job runs from the CLI, the API or a batch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from artconv import batch, registry
from artconv.cli import main
from artconv.engine import Interrupted, Step
from artconv.io.images import load_image
from artconv.options import flag
from tests.conftest import make_image
from tests.fast.fast_models import tiny_model

ENGINES = sorted(registry.ENGINES)
OUTPUT = {"style": "out.png", "dream": "out.png", "features": "out.npy", "fast": "out.png"}
# The command a job of each engine is given as: the fast engine's is `artconv style --model`.
COMMAND = {"fast": "style"}


def tiny_options(name: str, backbone: Path):
    """Fast options on the tiny own backbone; every field differs from nothing the CLI
    cannot express, so the same job can be given as flags."""
    common = {"backbone": f"{backbone}:build", "precision": "fp32", "device": "cpu"}
    if name == "fast":  # a trained network: no loss network; one photo per pass, two steps
        model = tiny_model(backbone.parent / "tiny.safetensors")
        return registry.get(name).options(model=str(model), precision="fp32", device="cpu",
                                          per_pass=1)
    per_engine = {
        "style": {"size": 32, "iterations": (3,), "content_layers": ("r2",),
                  "style_layers": ("r1", "r2")},
        "dream": {"layers": ("r3",), "octaves": 2, "steps": 2, "jitter": 2},
        "features": {"layers": ("r1", "r2")},
    }
    return registry.get(name).options(**common, **per_engine[name])


@pytest.fixture
def files(tmp_path):
    contents = [make_image(tmp_path / f"c{i}.png", (32, 32), seed=i) for i in range(2)]
    style = make_image(tmp_path / "s.png", (32, 32), seed=9)
    return contents, style


def build(name, backbone, callback=None):
    spec = registry.get(name)
    return spec.engine(tiny_options(name, backbone), callback=callback)


def run(engine, name, files):
    contents, style = files
    images = torch.stack([load_image(p) for p in contents])
    inputs = {"styles": [load_image(style)]} if registry.get(name).takes_styles else {}
    return engine.run(images, **inputs)


def inputs_of(name, content, style):
    return [str(content), str(style)] if registry.get(name).takes_styles else [str(content)]


@pytest.mark.parametrize("name", ENGINES)
def test_runs_a_batch_and_streams_one_kind_of_step(name, backbone_file, files):
    steps: list[Step] = []
    images: list = []

    def callback(step):
        steps.append(step)
        if len(steps) == 1:
            images.append(step.image)

    out = run(build(name, backbone_file, callback), name, files)
    assert out.shape[0] == 2 and out.shape[-2:] == (32, 32)
    if name != "features":
        assert out.shape[1] == 3 and float(out.min()) >= 0 and float(out.max()) <= 1
    assert steps and all(isinstance(s, Step) and s.engine == name for s in steps)
    assert [s.done for s in steps] == list(range(1, len(steps) + 1))
    assert {s.total for s in steps} == {len(steps)}
    assert all(1 <= s.step <= s.steps and 1 <= s.stage <= s.stages for s in steps)
    if name == "features":
        assert images[0] is None
    else:
        assert images[0].dim() == 4 and images[0].shape[1] == 3


@pytest.mark.parametrize("name", ENGINES)
def test_a_callback_returning_false_stops_with_the_result_so_far(name, backbone_file, files):
    calls = []
    full = run(build(name, backbone_file), name, files)
    out = run(build(name, backbone_file, lambda s: calls.append(s) or False), name, files)
    assert len(calls) == 1
    assert out.shape == full.shape


@pytest.mark.parametrize("name", ENGINES)
def test_ctrl_c_hands_back_the_image_so_far(name, backbone_file, files):
    full = run(build(name, backbone_file), name, files)
    seen = []

    def callback(step):
        seen.append(step)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        run(build(name, backbone_file, callback), name, files)
    assert err.value.engine == name
    assert err.value.image is not None and tuple(err.value.image.shape) == tuple(full.shape)


def _without_time(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k != "created"}


def _printed_recipe(path: Path, capsys) -> dict:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["recipe", str(path)])
    assert done.value.code == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ENGINES)
def test_the_recipe_round_trips_through_artconv_recipe(name, backbone_file, files, tmp_path,
                                                        capsys):
    contents, style = files
    engine = build(name, backbone_file)
    out = run(engine, name, files)
    inputs = inputs_of(name, contents[0], style)
    recipe = engine.recipe(inputs)
    assert recipe["engine"] == name
    assert json.loads(json.dumps(recipe))["options"] == json.loads(
        json.dumps(engine.options.to_dict()))
    written = registry.get(name).writer(engine, out[0], tmp_path / OUTPUT[name], inputs=inputs)
    read = _printed_recipe(Path(written[0]), capsys)
    for key in ("engine", "options", "seed", "weights", "inputs", "artconv", "torch"):
        assert read[key] == json.loads(json.dumps(recipe[key])), key


def _flags(options) -> list[str]:
    """The CLI flags that give `options` (fields that differ from their defaults)."""
    argv = []
    defaults = type(options)()
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if value == getattr(defaults, f.name) or value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag(f.name) if value else f"--no-{flag(f.name)[2:]}")
        elif isinstance(value, tuple):
            argv += [flag(f.name), ",".join(map(str, value))]
        else:
            argv += [flag(f.name), str(value)]
    return argv


@pytest.mark.parametrize("name", ENGINES)
def test_cli_api_and_batch_make_equal_recipes_for_one_job(name, backbone_file, files,
                                                          tmp_path, capsys):
    contents, style = files
    content = contents[0].resolve()
    style = style.resolve()
    opts = tiny_options(name, backbone_file)
    spec = registry.get(name)
    given = [str(content), str(style)] if spec.takes_styles else [str(content)]

    cli_out = tmp_path / "cli" / OUTPUT[name]
    cli_out.parent.mkdir()
    with pytest.raises(SystemExit) as done:
        main([COMMAND.get(name, name), *given, "-o", str(cli_out), "--quiet", *_flags(opts)])
    assert done.value.code == 0

    engine = spec.engine(opts)
    result = engine.run(load_image(content)[None], **(
        {"styles": [load_image(style)]} if spec.takes_styles else {}))
    api_out = spec.writer(engine, result[0], tmp_path / "api" / OUTPUT[name], inputs=given)[0]

    jobs = batch.plan(name, [content], styles=[style] if spec.takes_styles else [],
                      out_dir=tmp_path / "batch")
    report = batch.render(jobs, {name: opts})
    assert report.count("done") == 1, report.to_dict()

    recipes = [_without_time(_printed_recipe(Path(p), capsys))
               for p in (cli_out, api_out, jobs[0].output)]
    assert recipes[0] == recipes[1] == recipes[2]
