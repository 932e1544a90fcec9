"""`artconv batch style|dream|features INPUTS ...` and `artconv batch run MANIFEST`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Optional

import typer
from rich.table import Table

from artconv import registry
from artconv.batch.options import BatchOptions
from artconv.cli.common import Ui, command, console, option_parameters, split_options, ui_parameters
from artconv.cli.video import video_parameters
from artconv.errors import ArtconvError

# Engines whose batches take clips (a clip, a frames folder or glob is one job each).
CLIP_ENGINES = ("style", "dream", "fast")
# What `artconv batch ENGINE --help` says (an engine without a line here gets its summary).
ENGINE_HELP = {
    "style": "Every input x every style (or all styles blended with --blend-styles).",
    "dream": "Dream every input (e.g. every frame of a clip).",
    "features": "Per-pixel features of every input.",
}


def _batch_command(engine: str):
    spec = registry.get(engine)

    def run(**kwargs: Any) -> None:
        from artconv import batch
        from artconv.presets import options_for

        ui = Ui(quiet=kwargs.pop("quiet"), json=kwargs.pop("json_out"))
        inputs = kwargs.pop("inputs")
        styles = [s for s in (kwargs.pop("styles", None) or "").split(",") if s]
        blend = kwargs.pop("blend_styles", False)
        preset = kwargs.pop("preset")
        bopts = BatchOptions.from_dict(
            {k: v for k, v in split_options(BatchOptions, kwargs).items() if v is not None})
        options = options_for(engine, preset, split_options(spec.options, kwargs))
        jobs = batch.plan(engine, inputs, styles=styles, out_dir=bopts.out_dir,
                          template=bopts.template, blend=blend)
        jobs = _with_clip_flags(jobs, kwargs)
        _execute(jobs, {engine: options}, bopts, ui, inputs=_preset_files(preset))

    params = [inspect.Parameter("inputs", inspect.Parameter.KEYWORD_ONLY,
                                annotation=list[str],
                                default=typer.Argument(..., help="Images, folders or glob "
                                                       "patterns (quote them).", ))]
    if spec.takes_styles:
        params += [
            inspect.Parameter("styles", inspect.Parameter.KEYWORD_ONLY,
                              annotation=Optional[str],  # noqa: UP045
                              default=typer.Option(..., "--styles",
                                                   help="Comma-separated style images or "
                                                        "style presets.")),
            inspect.Parameter("blend_styles", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                              default=typer.Option(False, "--blend-styles",
                                                   help="One job per input with all styles "
                                                        "blended (see --blend).")),
        ]
    params += option_parameters(BatchOptions)
    params += ui_parameters() + option_parameters(spec.options)
    if engine in CLIP_ENGINES:
        params += video_parameters(partial=False)
    return run, params


def _with_clip_flags(jobs: list, kwargs: dict[str, Any]) -> list:
    """The clip flags given (VideoOptions fields) set on every clip job of the batch; given
    with no clip among the inputs they are a mistake worth naming."""
    import dataclasses

    from artconv.options import flag
    from artconv.video.options import VideoOptions

    given = {k: v for k, v in split_options(VideoOptions, kwargs).items() if v is not None}
    if not given:
        return jobs
    if not any(j.is_clip for j in jobs):
        raise ArtconvError(f"{flag(next(iter(given)))}: only for clips, and no input of this "
                           "batch is a clip (or a frames folder)")
    # Checked and made plain (e.g. "1,2,4" -> [1, 2, 4]) once, as a manifest's "video"
    # table is: the job record stays JSON, and a Ray worker reads it back the same way.
    plain = VideoOptions.from_dict(given, source="clip options").to_dict()
    video = {k: plain[k] for k in given}
    return [dataclasses.replace(j, video={**j.video, **video}) if j.is_clip else j
            for j in jobs]


def run_manifest(
    manifest: str = typer.Argument(..., help="TOML ([[job]] tables) or JSON Lines file."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",  # noqa: UP045
                                         help="Preset applied under every job's options."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="See `batch style`."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo existing outputs."),
    report: Optional[str] = typer.Option(None, "--report", help="JSON summary file."),  # noqa: UP045
    sheet: Optional[str] = typer.Option(None, "--sheet", help="Contact sheet PNG."),  # noqa: UP045
    engine: str = typer.Option("local", "--engine", help="local or ray."),
    address: str = typer.Option("auto", "--address", help="Ray cluster address."),
    gpus_per_job: float = typer.Option(0.0, "--gpus-per-job", min=0.0),
    cpus_per_job: float = typer.Option(1.0, "--cpus-per-job", min=0.0),
    max_retries: int = typer.Option(2, "--max-retries", min=0,
                                    help="Ray: retries of a job whose worker died."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the jobs of a manifest: one job a line (JSON Lines) or [[job]] tables (TOML), each
    with its input, styles, output and option overrides; paths relative to the manifest."""
    from artconv import batch
    from artconv.presets import options_for

    jobs = batch.read_manifest(manifest)
    bopts = BatchOptions(batch_size=batch_size, overwrite=overwrite, report=report,
                               sheet=sheet, engine=engine, address=address,
                               gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                               max_retries=max_retries).validated()
    engines = {j.engine for j in jobs}
    options = {e: options_for(e, preset) for e in engines}
    for job in jobs:  # a line's values on top of --preset: wrong ones name the line now
        try:
            options[job.engine].replace(**job.options)
        except ArtconvError as exc:
            raise batch.option_error(job.where, exc) from None
    _execute(jobs, options, bopts, Ui(quiet=quiet, json=json_out),
             inputs=[manifest, *_preset_files(preset)])


def _preset_files(preset: str | None) -> list[Any]:
    from artconv.presets import find_preset

    return [find_preset(preset).path] if preset else []


def _execute(jobs: list, options: dict[str, Any], bopts: Any, ui: Ui,
             inputs: Sequence[Any] = ()) -> None:
    from artconv import batch
    from artconv.progress import Progress

    if bopts.sheet:
        batch.check_sheet(jobs, bopts.sheet)
    inputs = [*inputs, *batch.input_files(jobs, options.values())]
    batch.check_collisions(jobs, inputs)
    batch.check_extra_writes(jobs, [("--report", bopts.report), ("--sheet", bopts.sheet)],
                             inputs)
    runner = None
    if bopts.engine == "ray":
        from artconv.batch.ray import RayRunner

        runner = RayRunner(address=bopts.address, gpus_per_job=bopts.gpus_per_job,
                           cpus_per_job=bopts.cpus_per_job, max_retries=bopts.max_retries)
    # transient tasks: each job's bar goes when it ends, the overall bar stays
    with Progress(quiet=ui.quiet or ui.json, console=console, transient_tasks=True) as progress:
        report = batch.render(jobs, options, runner=runner, overwrite=bopts.overwrite,
                              batch_size=bopts.batch_size, progress=progress)
    if bopts.report:
        report.write(bopts.report)
    if bopts.sheet:
        batch.sheet_for(report, bopts.sheet)
    if ui.json:
        ui.result(report.to_dict())
    elif not ui.quiet:
        _summary(report)
    else:  # --quiet hides the table, never the failures
        for r in report.results:
            if r.status == "failed":
                console.print(f"failed: {r.job.output}: {r.reason}", highlight=False,
                              soft_wrap=True, markup=False)
    if report.interrupted:
        console.print("[yellow]interrupted:[/] finished outputs are kept; run the same "
                      "command again to do the rest")
        raise typer.Exit(130)
    if not report.ok:
        raise typer.Exit(1)


def _summary(report: Any) -> None:
    table = Table(title=f"batch: {report.count('done')} done, {report.count('skipped')} "
                        f"skipped, {report.count('failed')} failed in {report.seconds:.1f} s",
                  title_justify="left")
    for col in ("output", "status", "time", "reason"):
        table.add_column(col, overflow="fold")
    style = {"done": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow"}
    for r in report.results:
        table.add_row(r.job.output, f"[{style[r.status]}]{r.status}[/]",
                      f"{r.seconds:.1f} s" if r.seconds else "", r.reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    batch_app = typer.Typer(no_args_is_help=True, help="Render many images: resumable, "
                            "failures isolated, one network per batch.")
    for name, spec in registry.ENGINES.items():
        fn, params = _batch_command(name)
        command(batch_app, name, fn, params, ENGINE_HELP.get(name, spec.summary))
    batch_app.command("run")(run_manifest)
    app.add_typer(batch_app, name="batch")
