"""The `artconv` command. Each engine's commands live in their own module here
(assembled in `app.py`); this one turns user errors into one line and a non-zero exit.

It imports nothing heavy at module level, so Ctrl-C while torch is still loading is
handled like Ctrl-C anywhere else.
"""

from __future__ import annotations

import sys


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from rich.markup import escape

    from artconv.cli.common import console

    console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ArtconvError and usage errors are one red line (exit 2), Ctrl-C exits
    130 without a traceback, `--debug` shows the traceback."""
    try:
        _run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _run(argv: list[str] | None) -> None:
    import warnings

    import typer
    from rich.markup import escape

    from artconv.cli.app import app
    from artconv.cli.common import console, state
    from artconv.errors import ArtconvError

    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except ArtconvError as exc:
        if state.debug:
            raise
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        raise KeyboardInterrupt from None
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click usage errors
            if type(exc).__name__ == "NoArgsIsHelpError" or not exc.format_message().strip():
                # `artconv` (or a group) with no command: the help is already shown and
                # is the whole answer; an "error:" line after it would be empty.
                sys.exit(exc.exit_code)
            if state.debug:
                raise
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see `{ctx.command_path} --help`)"
            console.print(f"[red]error:[/] {escape(exc.format_message())}{hint}",
                          highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
