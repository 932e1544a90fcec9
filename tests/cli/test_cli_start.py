"""A fast start: `artconv --help`, `--version`, `presets` and every `artconv CMD --help` run
without importing torch (the engines load inside the command functions only)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from artconv.cli import main

# Runs every help command of the app in one fresh interpreter, checking after each that
# torch is still not loaded; prints the commands it ran as JSON.
PROBE = """
import contextlib, io, json, sys
import typer.main
from artconv.cli import main
from artconv.cli.app import app

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, (*prefix, name))

argvs = [["--version"], ["presets"]] + [[*p, "--help"] for p in paths(typer.main.get_command(app))]
for argv in argvs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit as done:
            assert done.code in (0, None), (argv, done.code)
    assert "torch" not in sys.modules, f"artconv {' '.join(argv)} imported torch"
print(json.dumps(argvs))
"""


def test_help_version_and_presets_never_import_torch():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    ran = {" ".join(argv) for argv in json.loads(done.stdout)}
    # every command of every engine, and the batch ones
    assert {"--help", "--version", "presets", "style --help", "dream --help",
            "features --help", "layers --help", "recipe --help", "presets --help",
            "batch --help", "batch style --help", "batch dream --help",
            "batch features --help", "batch run --help"} <= ran


def test_importtime_of_style_help_shows_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "artconv", "style",
                           "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")]
    assert modules and not [m for m in modules if m.split(".")[0] == "torch"]


@pytest.mark.parametrize("argv", [["--help"], ["style", "--help"], ["batch", "run", "--help"]])
def test_help_in_process(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Usage" in out


def test_version_in_process(capsys):
    from artconv import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"artconv {__version__}"
