"""Rich progress bars for long jobs: the display adapter on the engines' step callback.

Engines never import this module: they report `artconv.engine.Step` records to a callback,
and `Progress.on_step` turns those into one bar per stage (scale, octave, tile), so the CLI,
a batch (an overall bar plus the current job's) and scripts share one display.
`Progress(quiet=True)` draws nothing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="progress.data.speed")


def format_figures(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        parts.append(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


class Task_:
    """One bar: `update(advance=1, loss=..., ...)` shows the figures beside it."""

    def __init__(self, owner: Progress, task_id: TaskID | None) -> None:
        self._owner, self._id = owner, task_id

    def update(self, advance: float = 1, description: str | None = None,
               total: float | None = None, **figures: Any) -> None:
        bar = self._owner._bar
        if bar is None or self._id is None:
            return
        kwargs: dict[str, Any] = {"advance": advance}
        if description is not None:
            kwargs["description"] = description
        if total is not None:
            kwargs["total"] = total
        if figures:
            kwargs["figures"] = format_figures(figures)
        bar.update(self._id, **kwargs)

    def remove(self) -> None:
        """Take the bar off the screen (a tile pass: many per scale)."""
        bar = self._owner._bar
        if bar is not None and self._id is not None:
            bar.remove_task(self._id)
            self._id = None

    def done(self) -> None:
        """Finish the bar; in a batch display (transient tasks) it is removed."""
        bar = self._owner._bar
        if bar is not None and self._id is not None and self._owner.transient_tasks:
            bar.remove_task(self._id)


class Progress:
    """A context manager around rich's Progress with step, figures, it/s and ETA columns."""

    def __init__(self, quiet: bool = False, console: Console | None = None,
                 transient_tasks: bool = False) -> None:
        self.quiet = quiet
        self.transient_tasks = transient_tasks
        self._console = console or Console(stderr=True, emoji=False)
        self._bar: RichProgress | None = None
        self._depth = 0
        self._stage_key: tuple | None = None
        self._stage_task: Task_ | None = None
        self._tile_key: tuple | None = None
        self._tile_task: Task_ | None = None

    def __enter__(self) -> Progress:
        self._depth += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None

    def task(self, description: str, total: float | None) -> Task_:
        if self.quiet or self._depth == 0:
            return Task_(self, None)
        if self._bar is None:  # started at the first task: an early error leaves no trace
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
                MofNCompleteColumn(), TextColumn("{task.fields[figures]}"), RateColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self._console, transient=False)
            self._bar.__enter__()
        return Task_(self, self._bar.add_task(description, total=total, figures=""))

    def on_step(self, step: Any) -> None:
        """The engines' callback (`artconv.engine.Step`): a bar per stage with its figures,
        and under it, for a step that runs as tiles, a bar per tile pass with its ETA."""
        if getattr(step, "tiles", 0):
            self._on_tile(step)
            return
        key = (step.engine, step.frame, step.stage)
        if key != self._stage_key:
            if self._stage_task is not None:
                self._stage_task.done()
            self._stage_key = key
            self._stage_task = self.task(step.label, total=step.steps)
        figures = dict(step.figures)
        if step.frame:
            figures = {"frame": step.frame, **figures}
        self._stage_task.update(advance=1, **figures)
        if step.step >= step.steps:
            self._stage_task.done()
            self._stage_task, self._stage_key = None, None

    def _on_tile(self, step: Any) -> None:
        """A tile of a pass done: the pass's bar (tile count, rate, ETA), removed when the
        pass ends so a long scale leaves only its stage bar."""
        key = (step.engine, step.frame, step.stage, step.step, step.tile_pass)
        if key != self._tile_key:
            if self._tile_task is not None:
                self._tile_task.remove()
            self._tile_key = key
            self._tile_task = self.task(step.label, total=step.tiles)
        assert self._tile_task is not None
        self._tile_task.update(advance=1)
        if step.tile >= step.tiles:
            self._tile_task.remove()
            self._tile_task, self._tile_key = None, None

    def log(self, message: str) -> None:
        if not self.quiet:
            self._console.print(message, highlight=False)


def ensure(progress: Progress | None, quiet: bool = True) -> Progress:
    """The caller's Progress, or a fresh one (quiet unless asked) for API use."""
    return progress if progress is not None else Progress(quiet=quiet)
