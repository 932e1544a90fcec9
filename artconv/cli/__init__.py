"""The `artconv` command. Each engine's commands live in their own module here; this one
assembles them and turns user errors into one line and a non-zero exit."""

from __future__ import annotations

import importlib
import sys
import warnings

import typer
from rich.markup import escape

from artconv import __version__
from artconv.cli.common import console, state
from artconv.errors import ArtconvError

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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ArtconvError is one red line (exit 2), Ctrl-C exits 130, usage errors
    print click's message (exit 2)."""
    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except ArtconvError as exc:
        if state.debug:
            raise
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
