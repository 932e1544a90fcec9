"""Running a batch: `render` skips finished outputs, hands the rest to a runner (the local
one, or Ray's) and reports; contact sheets of the results.

Nothing lost (README, "Nothing lost"): every path is checked before any work, outputs are
written atomically with their recipes, and a re-run sweeps a killed run's temporaries,
skips the finished outputs (those with their recipe) and never takes its own outputs for
inputs. A runner isolates failures: a bad input fails its job alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from artconv.batch.jobs import (
    BatchReport,
    Job,
    JobResult,
    check_collisions,
    check_extra_writes,
    describe,
    reason,
    recorder,
)
from artconv.errors import ArtconvError
from artconv.options import CoreOptions
from artconv.outputs import check_writable, output_complete, same_file, sweep_temporaries
from artconv.presets import options_for
from artconv.progress import Progress, ensure


class Runner(Protocol):
    """Executes jobs; the local and the Ray runner share this interface."""

    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *,
            batch_size: int, progress: Progress,
            on_result: Callable[[JobResult], Any]) -> list[JobResult]:
        """Run every job (none is skipped here) and call `on_result` as each ends.

        A runner may also keep `running`, the jobs started and not yet reported, so that a
        Ctrl-C report can tell the jobs it cut short from those that never started."""


def render(jobs: Sequence[Job], options: Mapping[str, CoreOptions | Mapping[str, Any]]
           | None = None, *, runner: Runner | None = None, overwrite: bool = False,
           batch_size: int = 1, progress: Progress | None = None, quiet: bool = True,
           ) -> BatchReport:
    """Run `jobs` and return a report; existing outputs are skipped unless `overwrite`.

    `options` maps an engine name to its options (an options object or a dict of fields),
    the base every job's own overrides apply to.
    """
    if batch_size < 1:
        raise ArtconvError(f"--batch-size {batch_size}: must be at least 1")
    check_collisions(jobs)
    base = resolve_options(options or {}, {j.engine for j in jobs})
    start = time.perf_counter()
    # A killed run (SIGKILL, power loss) leaves hidden temporaries beside its outputs that
    # nothing else would ever remove; this batch is about to write those outputs again.
    swept = sweep_temporaries(j.output for j in jobs)
    results: dict[int, JobResult] = {}
    for i, job in enumerate(jobs):
        if not overwrite and finished_before(job):
            results[i] = JobResult(job, "skipped", "output exists")
    todo = [job for i, job in enumerate(jobs) if i not in results]
    for job in todo:  # an unwritable folder fails the batch now, not every job at its end
        check_writable(job.output, "output")
    if runner is None:
        from artconv.batch.local import LocalRunner

        runner = LocalRunner()
    interrupted = _run(runner, jobs, todo, base, results, batch_size,
                       ensure(progress, quiet))
    stats = dict(getattr(runner, "stats", {}))
    if swept:
        stats["temp_files_swept"] = stats.get("temp_files_swept", 0) + len(swept)
    return BatchReport([results[i] for i in sorted(results)], time.perf_counter() - start,
                       stats, interrupted)


def finished_before(job: Job) -> bool:
    """True when the job's output is there, finished, and its recipe says this job made it
    (its engine, from its input): a re-run skips it. False when there is nothing to keep
    (no output, a clip's work folder, or this job's own partial or interrupted output): the
    job runs. Anything else at the output path (a file artconv did not make, or another
    job's) is refused, naming the file, before any work."""
    from artconv.io.recipe import read_any_recipe  # torch: not at `artconv batch --help`

    path = Path(job.output)
    if path.is_dir() or not (path.exists() or path.is_symlink()):
        return False
    try:
        recipe = read_any_recipe(path)
    except ArtconvError:
        recipe = {}
    if not recipe or recipe.get("unfinished"):  # "unfinished": read from a work folder
        raise ArtconvError(f"{path}: exists and is not an artconv output (it carries no "
                           f"recipe); {describe(job)} would overwrite it: move it, or give "
                           "the job another output")
    made_from = (recipe.get("inputs") or [None])[0]
    if recipe.get("engine") != job.engine or not _names_input(made_from, job.input):
        raise ArtconvError(f"{path}: was made by another job ({recipe.get('engine')} of "
                           f"{made_from}), not {describe(job)}; give the job another output "
                           "or use --overwrite")
    # An output with its recipe is finished, unless it says it was cut short.
    return output_complete(path) and not (recipe.get("partial") or recipe.get("interrupted"))


def _names_input(recorded: Any, given: str) -> bool:
    """A recipe's input names the job's: the same text or file, or (a recipe made from
    another working folder records a relative path) the same file name."""
    if not isinstance(recorded, str):
        return False
    return recorded == given or same_file(recorded, given) or \
        Path(recorded).name == Path(given).name


def _run(runner: Runner, jobs: Sequence[Job], todo: Sequence[Job],
         options: Mapping[str, CoreOptions], results: dict[int, JobResult],
         batch_size: int, progress: Progress) -> bool:
    """Run `todo` under an overall bar, filling `results`; True when Ctrl-C stopped it."""
    order = {id(j): i for i, j in enumerate(jobs)}
    failed = 0

    def on_result(result: JobResult) -> None:
        nonlocal failed
        # a report keeps no exception (nor the tensors its traceback holds) per failed job
        results[order[id(result.job)]] = dataclasses.replace(result, error=None)
        failed += result.status == "failed"
        overall.update(1, failed=failed)

    with progress:
        overall = progress.task("batch", len(jobs))
        overall.update(len(results))
        try:
            runner.run(todo, options, batch_size=batch_size, progress=progress,
                       on_result=on_result)
        except KeyboardInterrupt:  # report what was done; the re-run finishes the rest
            running = {id(j) for j in getattr(runner, "running", ())}
            for i, job in enumerate(jobs):
                results.setdefault(i, JobResult(
                    job, "interrupted", "interrupted while running" if id(job) in running
                    else "Ctrl-C before it ran"))
            return True
    return False


def resolve_options(options: Mapping[str, CoreOptions | Mapping[str, Any]],
                    engines: Iterable[str]) -> dict[str, CoreOptions]:
    """Each engine's base options: the given record, or one made from a dict of fields."""
    out = {}
    for engine in engines:
        given = options.get(engine)
        out[engine] = given if isinstance(given, CoreOptions) else options_for(
            engine, overrides=dict(given or {}))
    return out


# `reason` and `recorder` live beside JobResult (batch.jobs); batch.ray and the studio still
# import them from here.
__all__ = ["Runner", "check_sheet", "reason", "recorder", "render", "resolve_options",
           "sheet_for"]


# -- contact sheets --------------------------------------------------------------------------
def sheet_for(report: BatchReport, path: str | Path, thumb: int = 192) -> Path:
    """A contact sheet of a batch of pictures: contents down, styles across (one column
    when the jobs have no styles), results inside."""
    from artconv.io.sheet import contact_sheet

    jobs = [r.job for r in report.results]
    check_sheet(jobs, path)
    rows = list(dict.fromkeys(j.input for j in jobs))
    columns: list[str | None] = list(dict.fromkeys(s for j in jobs for s in j.styles[:1]))
    columns = columns or [None]
    status = {id(r.job): r.status for r in report.results}
    cells = {(rows.index(j.input), columns.index(j.styles[0]) if j.styles else 0):
             j.output if status[id(j)] != "failed" else None for j in jobs}
    return contact_sheet(rows, columns, cells, path, thumb=thumb)


def check_sheet(jobs: Sequence[Job], path: str | Path) -> None:
    """Refuse a contact sheet that cannot be drawn, before the batch runs rather than after."""
    from artconv.io.files import SAVE_FORMATS

    if Path(path).suffix.lower() not in SAVE_FORMATS:
        raise ArtconvError(f"--sheet {path}: must be an image file "
                           f"({', '.join(SAVE_FORMATS)})")
    arrays = next((j for j in jobs if Path(j.output).suffix.lower() not in SAVE_FORMATS), None)
    if arrays is not None:
        raise ArtconvError(f"--sheet {path}: {arrays.engine} outputs such as "
                           f"{Path(arrays.output).name} are arrays, not pictures")
    check_extra_writes(jobs, [("--sheet", path)])
