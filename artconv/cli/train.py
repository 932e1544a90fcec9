"""`artconv train STYLE [STYLE ...] --images PHOTOS -o MODEL.safetensors`: train a fast style
network (`artconv.fast.train`). The flags are generated from `TrainOptions`; the loss flags
mean what they mean for `artconv style`. Re-running the same command resumes.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from artconv.cli.common import (
    Ui,
    command,
    console,
    option_parameters,
    split_options,
    ui_parameters,
)

HELP = ("Train a fast style network on photos: afterwards `artconv style PHOTO --model "
        "MODEL` paints a photo in one pass. Re-running the same command resumes from the "
        "last checkpoint; Ctrl-C writes one and the model so far (exit 130).")


def _parameters() -> list[inspect.Parameter]:
    from artconv.fast.train_options import TrainOptions

    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("styles", kw, annotation=list[str], default=typer.Argument(
            ..., help="Style image(s) (files or URLs), or names of style presets.",
            show_default=False)),
        inspect.Parameter("images", kw, annotation=list[str], default=typer.Option(
            ..., "--images", help="Training photos: a folder, a glob ('photos/*.jpg'), a "
            "list file (.txt: one path or URL a line), or an image; repeat for more. "
            "Unreadable photos are skipped and named.", show_default=False)),
        inspect.Parameter("output", kw, annotation=Optional[Path],  # noqa: UP045
                          default=typer.Option(
                              None, "--output", "-o",
                              help="The model file (.safetensors). Default: STYLE.safetensors "
                                   "in the current directory. Its work folder (checkpoint, "
                                   "loss curve, preview sheet) is OUTPUT.train/.")),
        *[p for p in ui_parameters() if p.name != "preset"],
        *option_parameters(TrainOptions),
        *ray_parameters(),
    ]


def ray_parameters() -> list[inspect.Parameter]:
    """--engine/--workers/--address: where the run trains (`artconv.fast.distributed`); not
    options of the run, so a run may resume on another engine."""
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("engine", kw, annotation=str, default=typer.Option(
            "local", "--engine", help="local: this process; ray: data-parallel on a Ray "
            "cluster (pip install \"artconv\\[ray]\"), the global batch is --batch-size.")),
        inspect.Parameter("workers", kw, annotation=int, default=typer.Option(
            2, "--workers", min=1, help="Ray: training workers (one CPU, or one GPU each when "
            "the cluster has them); must divide --batch-size.")),
        inspect.Parameter("address", kw, annotation=str, default=typer.Option(
            "auto", "--address", help="Ray cluster address: auto (a running cluster, else a "
            "new local one) or HOST:PORT.")),
    ]


def train_command(**kwargs: Any) -> None:
    from artconv.engine import Interrupted
    from artconv.errors import ArtconvError
    from artconv.fast.data import list_photos
    from artconv.fast.distributed import check_workers, train_on_ray, worker_line
    from artconv.fast.train import train
    from artconv.fast.train_options import TrainOptions
    from artconv.presets import resolve_sources
    from artconv.progress import Progress

    overrides = {k: v for k, v in split_options(TrainOptions, kwargs).items() if v is not None}
    options = TrainOptions.from_dict(overrides)
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    sources = resolve_sources(kwargs["styles"], "style")
    output = kwargs["output"] or Path.cwd() / ("_".join(sources.names) + ".safetensors")
    photos = list_photos(kwargs["images"])
    if kwargs["engine"] not in ("local", "ray"):
        raise ArtconvError(f"--engine {kwargs['engine']}: local or ray")
    if kwargs["engine"] == "ray":
        check_workers(options, kwargs["workers"])  # before Ray starts
    styles = [str(s) for s in sources.images]
    try:
        if kwargs["engine"] == "ray":  # no live display: worker 0's lines show on this console
            result = train_on_ray(options, styles, photos, output, workers=kwargs["workers"],
                                  address=kwargs["address"],
                                  log=None if ui.quiet or ui.json else worker_line)
        else:
            with Progress(quiet=ui.quiet or ui.json) as progress:
                say = progress.log if not (ui.quiet or ui.json) else None
                result = train(options, styles, photos, output, callback=progress.on_step,
                               log=say)
    except Interrupted:
        console.print(f"interrupted: wrote a checkpoint and the model so far to {output}; "
                      "run the same command to resume", highlight=False)
        raise typer.Exit(130) from None
    ui.result({"output": str(result.output), "steps": result.steps, "done": result.done,
               "photos": result.photos, "heldout": result.heldout,
               "skipped": result.skipped, "photos_per_second": round(
                   result.photos_per_second, 3), "losses": result.figures,
               "heldout_loss": result.heldout_loss, "work_folder": str(result.folder)})


def register(app: typer.Typer) -> None:
    command(app, "train", train_command, _parameters(), HELP)
