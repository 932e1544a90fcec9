"""The typer application: the root options and every command module registered."""

from __future__ import annotations

import typer

from artconv._version import __version__
from artconv.cli import batch, core, dream, export, features, serve, style, train, video
from artconv.cli.common import state
from artconv.io.files import use_downloader
from artconv.presets import download_image

app = typer.Typer(
    name="artconv", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode="rich",
    help="Deep Dream, neural style transfer and per-pixel features from named VGG layers.")

# Each registers its commands; none imports torch (engines load inside the commands).
COMMAND_MODULES = (core, style, dream, features, batch, serve, video, train, export)


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
    # Image URLs read anywhere below download with a progress bar on stderr.
    use_downloader(download_image)


for _module in COMMAND_MODULES:
    _module.register(app)
