"""The typer application: the root options and every command module registered."""

from __future__ import annotations

import importlib

import typer

from artconv import __version__
from artconv.cli.common import state

app = typer.Typer(
    name="artconv", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode="rich",
    help="Deep Dream, neural style transfer and per-pixel features from named VGG layers.")

COMMAND_MODULES = ("core", "style", "dream", "features", "batch")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"artconv {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state.debug = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"artconv.cli.{_name}").register(app)
