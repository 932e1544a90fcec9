"""The commands drive every engine the same way, in-process through `main(argv)`: progress
reaches the display through the engines' step callback (`Progress.on_step`), Ctrl-C saves
the picture so far with its recipe and exits 130, `--json` prints only JSON and `--quiet`
draws nothing, and a batch reports its jobs' steps through the same adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artconv import registry
from artconv.io.images import load_image, read_recipe
from artconv.progress import Progress
from tests.conftest import make_image, run_cli
from tests.fast.fast_models import tiny_model

ENGINES = sorted(registry.ENGINES)
OUTPUT = {"style": "out.png", "dream": "out.png", "features": "out.npy", "fast": "out.png"}
FLAGS = {
    "style": ["--size", "32", "--iterations", "3", "--content-layers", "r2",
              "--style-layers", "r1,r2"],
    "dream": ["--layers", "r3", "--octaves", "2", "--steps", "2"],
    "features": ["--layers", "r1,r2"],
    "fast": ["--tile", "64", "--size", "96"],  # 4 tiles x 8 passes: steps to show
}
COMMAND = {"fast": "style"}  # a trained network runs as `artconv style PHOTO --model M`


def network(name: str, backbone: Path) -> list[str]:
    """The flags naming the engine's network: the tiny backbone, or a tiny trained model."""
    if name == "fast":
        return ["--model", str(tiny_model(backbone.parent / "tiny.safetensors"))]
    return ["--backbone", f"{backbone}:build"]



@pytest.fixture
def inputs(tmp_path):
    content = make_image(tmp_path / "c.png", (32, 32), seed=1)
    style = make_image(tmp_path / "s.png", (32, 32), seed=2)
    return content, style


def argv(name: str, inputs, backbone: Path, output: Path, *extra: str) -> list[str]:
    content, style = inputs
    given = [str(content), str(style)] if registry.get(name).takes_styles else [str(content)]
    return [COMMAND.get(name, name), *given, "-o", str(output), *network(name, backbone),
            "--precision", "fp32", "--device", "cpu", *FLAGS[name], *extra]


@pytest.fixture
def steps(monkeypatch):
    """Every step record the display is given."""
    seen: list = []
    original = Progress.on_step

    def on_step(self, step):
        seen.append(step)
        return original(self, step)

    monkeypatch.setattr(Progress, "on_step", on_step)
    return seen


@pytest.mark.parametrize("name", ENGINES)
def test_each_command_shows_its_engines_steps_and_prints_json_only(
        name, inputs, backbone_file, tmp_path, capsys, steps):
    out = tmp_path / OUTPUT[name]
    code, stdout, err = run_cli(argv(name, inputs, backbone_file, out, "--json"), capsys)
    assert code == 0, err
    assert steps and {s.engine for s in steps} == {name}
    assert [s.done for s in steps] == list(range(1, len(steps) + 1))
    json.loads(stdout)  # stdout holds the JSON result and nothing else
    assert err.strip() == ""  # --json draws no progress
    assert out.exists()


# features make no picture; a still through a trained network is one pass, and a Ctrl-C
# inside it has nothing to save (tests/fast/test_infer_cli.py)
@pytest.mark.parametrize("name", [n for n in ENGINES if n not in ("features", "fast")])
def test_ctrl_c_saves_the_picture_so_far_and_exits_130(name, inputs, backbone_file, tmp_path,
                                                        capsys, monkeypatch):
    calls = []

    def on_step(self, step):
        calls.append(step)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "on_step", on_step)
    out = tmp_path / "partial.png"
    code, _, err = run_cli(argv(name, inputs, backbone_file, out), capsys)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert load_image(out).shape == (3, 32, 32)
    recipe = read_recipe(out)
    assert recipe["interrupted"] is True and recipe["engine"] == name


def test_quiet_draws_nothing_and_style_save_every_writes_steps(inputs, backbone_file,
                                                                tmp_path, capsys):
    out = tmp_path / "styled.png"
    code, stdout, err = run_cli(argv("style", inputs, backbone_file, out, "--save-every", "2",
                                     "-q"), capsys)
    assert code == 0, err
    assert stdout == "" and err == ""
    step = tmp_path / "styled_00002.png"
    assert read_recipe(step)["step"] == 2
    assert {k: v for k, v in read_recipe(step).items() if k not in ("step", "created")} == {
        k: v for k, v in read_recipe(out).items() if k != "created"}


@pytest.mark.parametrize("name", ENGINES)
def test_a_batch_shows_its_jobs_steps_through_the_same_adapter(name, inputs, backbone_file,
                                                               tmp_path, capsys, steps):
    content, style = inputs
    extra = ["--styles", str(style)] if registry.get(name).takes_styles else []
    code, stdout, err = run_cli(["batch", name, str(content), *extra, "--out-dir",
                                 str(tmp_path / "out"), *network(name, backbone_file),
                                 "--precision", "fp32",
                                 "--device", "cpu", *FLAGS[name], "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["done"] == 1
    assert steps and {s.engine for s in steps} == {name}


@pytest.mark.parametrize("command", [
    lambda inputs, backbone, out: argv("style", inputs, backbone, out),
    lambda inputs, backbone, out: ["batch", "style", str(inputs[0]), "--styles",
                                   str(inputs[1]), "--out-dir", str(out.parent / "b"),
                                   "--backbone", f"{backbone}:build", "--precision", "fp32",
                                   "--device", "cpu", *FLAGS["style"]],
], ids=["style", "batch"])
def test_the_display_alone_does_not_make_adam_sync_every_step(
        command, inputs, backbone_file, tmp_path, capsys, monkeypatch, steps):
    """The progress bars are the engine's display, not a callback: with Adam the losses
    are read from the device every 10 steps and at the end, as without bars."""
    from artconv.style.optimise import ScaleRun

    reads: list[bool] = []
    evaluate = ScaleRun.evaluate

    def recorded(self, objective, read):
        reads.append(read)
        return evaluate(self, objective, read)

    monkeypatch.setattr(ScaleRun, "evaluate", recorded)
    args = command(inputs, backbone_file, tmp_path / "out.png")
    code, _, err = run_cli([*args, "--optimizer", "adam", "--iterations", "12", "--size", "32"],
                           capsys)
    assert code == 0, err
    assert len(steps) == 12  # the bars saw every step
    assert reads == [False] * 9 + [True, False, True]
