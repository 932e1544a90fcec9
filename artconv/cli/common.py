"""What every command shares: the console, `--quiet/--json/--preset`, and the flags that are
generated from an engine's options dataclass (so help text and defaults never drift)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from artconv.errors import ArtconvError
from artconv.options import field_name, option_fields

# emoji=False: messages quote user text such as "relu4_2:-1:", which rich would turn into 👎
console = Console(stderr=True, emoji=False)
# Pipes and CI logs get a fixed wide layout instead of rich's 80 columns, so tables don't wrap.
stdout = Console(width=None if sys.stdout.isatty() else 150, emoji=False)


@dataclass
class State:
    debug: bool = False


state = State()


@dataclass
class Ui:
    """Per-invocation output switches."""

    quiet: bool = False
    json: bool = False

    def say(self, message: str) -> None:
        if not self.quiet and not self.json:
            console.print(message, highlight=False)

    def result(self, data: dict[str, Any]) -> None:
        if self.json:
            stdout.print_json(json.dumps(data, default=str))


def option_parameters(cls: type, *, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One typer option per field of the record (`option_fields`). Defaults are None (= not
    given) so a preset's values survive unless the user names the flag; the real default is
    shown in the help."""
    params = []
    for f in option_fields(cls):
        if f.name in exclude:
            continue
        names = [f.flag] + ([f.short] if f.short else [])
        # escape: help text such as "pip install 'artconv[ray]'" is not rich markup
        kwargs: dict[str, Any] = {"help": escape(f.help), "show_default":
                                  _default_text(f.default), "rich_help_panel":
                                  "Network" if f.core else "Engine options"}
        if f.kind == "choice":  # an Enum works on every typer version (Literal needs a recent one)
            annotation: Any = Optional[  # noqa: UP045 - typer needs the typing form
                enum.Enum(f"{cls.__name__}_{f.name}", {str(c): str(c) for c in f.choices})]
        elif f.kind == "bool":
            annotation = Optional[bool]  # noqa: UP045
            names = [f"{f.flag}/--no-{f.flag[2:]}"]
        elif f.kind in ("int", "float"):
            annotation = Optional[f.type]  # noqa: UP045
        else:  # str, tuples (comma-separated), paths
            annotation = Optional[str]  # noqa: UP045
            if f.kind == "list":
                kwargs["help"] += " Comma-separated."
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=typer.Option(None, *names, **kwargs),
                                        annotation=annotation))
    return params


def flag_option(cls: type, name: str) -> Any:
    """The typer option of one field of a record with its real default, help and limits, for
    a command whose signature is written out (`batch run`, `serve`)."""
    f = next(f for f in option_fields(cls) if f.name == name)
    return typer.Option(f.default, f.flag, *([f.short] if f.short else []), help=escape(f.help),
                        min=f.min, max=f.max)


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def ui_parameters(json_flag: bool = True) -> list[inspect.Parameter]:
    params = [
        inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],  # noqa: UP045
                          default=typer.Option(None, "--preset", "-p",
                                               help="Named preset (see `artconv presets`); "
                                                    "explicit options override it.")),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--quiet", "-q",
                                               help="No progress display.")),
    ]
    if json_flag:
        params.append(inspect.Parameter(
            "json_out", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
            default=typer.Option(False, "--json", help="Print results as JSON on stdout.")))
    return params


def command(app: typer.Typer, name: str, fn: Callable[..., Any],
            params: list[inspect.Parameter], help: str) -> None:
    """Register `fn(**kwargs)` under `name` with an explicit, generated signature."""

    def wrapper(**kwargs: Any) -> Any:
        return fn(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper.__doc__ = help
    wrapper.__name__ = field_name(name)
    app.command(name, help=help)(wrapper)


def split_options(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the dataclass fields out of a command's kwargs (those still None were not given)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: _plain(kwargs.pop(k)) for k in list(kwargs) if k in names}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def check_picture_suffix(output: Path) -> None:
    """Refuse, before any work, an output picture in a format that cannot be saved."""
    from artconv.errors import ArtconvError
    from artconv.io.files import SAVE_FORMATS

    if output.suffix.lower() not in SAVE_FORMATS:
        raise ArtconvError(f"{output}: unsupported output format '{output.suffix}' (use "
                           f"{', '.join(sorted(SAVE_FORMATS))})")


def planned_writes(label: str, output: Path, extra: Iterable[tuple[str, Path]] = ()
                   ) -> list[tuple[str, Path]]:
    """What writing `output` (plus `extra` images such as intermediates) puts on disk, for
    `check_write_paths`: each image and, unless it is a PNG, its recipe sidecar.

    Of the `extra` ones only the first and those already on disk are listed: their names
    differ from each other and from `output` by construction, so only an existing file (an
    input, a link to one, a folder) can be in the way, and thousands of intermediates then
    cost one stat each instead of a comparison with every other."""
    from artconv.outputs import sidecar

    writes: list[tuple[str, Path]] = []
    for k, (what, path) in enumerate([(label, output), *extra]):
        if k > 1 and not (path.exists() or path.is_symlink()
                          or sidecar(path).exists() or sidecar(path).is_symlink()):
            continue
        writes.append((what, path))
        if path.suffix.lower() != ".png":
            writes.append((f"{what} recipe", sidecar(path)))
    return writes


def run_job(job: Any, options: Any, ui: Ui, *, interrupted: Callable[[bool], None],
            prepare: Callable[[Any], Any] | None = None,
            callback: Callable[[Any, Any], Any] | None = None,
            inputs: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """A single command's one `job` through the local runner batch uses (run, write, Ctrl-C
    saves what it has): (its engine, its `JobResult`). `prepare(engine)` runs once the engine
    is built, before the run (size checks, the device line); `callback(engine, step)` after
    each step; `inputs` go to the engine call. Ctrl-C: `interrupted(saved)` says what was
    kept, then exit 130. A failure raises what failed it."""
    from artconv import registry
    from artconv.batch.local import SAVED, LocalRunner, run_one
    from artconv.progress import Progress

    engine: Any = None
    runner = LocalRunner(callback=None if callback is None else
                         lambda step: callback(engine, step), inputs=inputs)
    with Progress(quiet=ui.quiet or ui.json) as progress:
        engine = runner.engine(registry.get(job.engine), options)
        if prepare is not None:
            prepare(engine)
        result = run_one(runner, job, options, progress)
    if result.status == "interrupted":
        interrupted(result.reason == SAVED)
        raise typer.Exit(130)
    if result.status == "failed":
        if result.error is not None:
            raise result.error
        raise ArtconvError(result.reason)
    return engine, result
