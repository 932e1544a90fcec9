"""The Ray flags (RayOptions) mean the same in `batch ENGINE`, `batch run` and `serve`."""

from __future__ import annotations

import pytest
import typer

from artconv.batch.options import RayOptions
from artconv.options import option_fields
from tests.conftest import run_cli

COMMANDS = {
    "batch style": ["batch", "style", "in.png", "--styles", "s.png"],
    "batch run": ["batch", "run", "jobs.toml"],
    # a short token fails before the port is bound: a flag accepted here would not serve
    "serve": ["serve", "--token", "x"],
}
OUT_OF_RANGE = [("--max-retries", "101"), ("--max-retries", "-1"), ("--gpus-per-job", "-1"),
                ("--cpus-per-job", "-0.5")]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flag", "value"), OUT_OF_RANGE)
def test_every_command_refuses_the_same_ray_values(command, flag, value, tmp_path,
                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([*COMMANDS[command], flag, value], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and flag in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [("batch", "run"), ("serve",)])
def test_written_out_ray_flags_have_the_records_defaults_and_limits(path):
    from artconv.cli.app import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    params = {p.name: p for p in command.params}
    for f in option_fields(RayOptions):
        param = params[f.name]
        assert (param.opts, param.default, param.help) == ([f.flag], f.default, f.help)
        assert (param.min, param.max) == (f.min, f.max)
