"""`artconv features`: per-pixel feature arrays, PCA pictures and similarity heat maps.

    artconv features cat.jpg -l relu1_2,relu2_1 -o cat.npy --pca cat-pca.png
    artconv features cat.jpg --similar-to 120,80 -o heat.png
    artconv features 'photos/*.jpg' --out-dir feats/ --pca-shared

Arrays are built in RAM, or memory-mapped straight into the output .npy when they would not
fit; every file appears atomically (written beside its final name, then renamed).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional

import typer
from rich.markup import escape

from artconv.cli.common import Ui, command, console, option_parameters, split_options, ui_parameters
from artconv.errors import ArtconvError


def features(images: list[str], output: str | None, out_dir: str | None, array_format: str,
             pca: str | None, preset: str | None, quiet: bool, json_out: bool,
             **kwargs: Any) -> None:
    from artconv.features import FeatureOptions
    from artconv.features.planner import check_files, check_write_paths, plan_files
    from artconv.io.images import list_images
    from artconv.outputs import sweep_temporaries
    from artconv.presets import options_for

    ui = Ui(quiet, json_out)
    opts = options_for("features", preset, split_options(FeatureOptions, kwargs))
    planned = plan_files(list_images(images), opts, output, out_dir, array_format, pca)
    check_write_paths(planned, opts)  # every write of the run, before any work
    # A killed earlier run of these outputs (a memory-mapped .npy is big) left its hidden
    # temporaries; nothing else writes these outputs now.
    sweep_temporaries(path for files in planned for _, path in files.writes())
    failed: list[dict[str, str]] = []
    isolated = _isolation(len(planned), failed)
    planned = [f for f in planned if isolated(f, lambda f=f: check_files(f, opts) or True)]
    results = _extract(opts, planned, isolated, ui)
    ui.result({"images": results, "failed": failed})
    if failed:
        raise typer.Exit(1)


def _isolation(count: int, failed: list[dict[str, str]]) -> Callable[[Any, Callable[[], Any]],
                                                                     Any]:
    """With several images a bad one fails alone (reported, exit 1 at the end)."""

    def isolated(files: Any, work: Callable[[], Any]) -> Any:
        if count == 1:
            return work()
        try:
            return work()
        except ArtconvError as exc:
            failed.append({"image": str(files.image), "error": str(exc)})
            console.print(f"[red]failed:[/] {escape(str(exc))}", highlight=False)
            return None

    return isolated


def _extract(opts: Any, planned: list[Any], isolated: Callable[..., Any], ui: Ui
             ) -> list[dict[str, Any]]:
    """Each image's features through one engine on one network, then a shared PCA."""
    from artconv import registry
    from artconv.features.files import FeatureWriter
    from artconv.networks import cached_extractor
    from artconv.progress import Progress

    results, done = [], []
    with Progress(quiet=ui.quiet or ui.json) as progress:
        engine = registry.get("features").engine(opts, extractor=cached_extractor(opts),
                                                 progress=progress)
        writer = FeatureWriter(engine)
        for files in planned:
            result = isolated(files, lambda files=files: writer.run(files, ui.say))
            if result is not None:
                results.append(result)
                done.append(files)
        if opts.pca_shared and done:
            writer.shared_pca(done, ui.say)
    return results


# -- registration -------------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    from artconv.features import FeatureOptions

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("images", kw, annotation=list[str], default=typer.Argument(
            ..., help="Image files, folders or quoted glob patterns ('photos/*.jpg').")),
        inspect.Parameter("output", kw, annotation=Optional[str], default=typer.Option(  # noqa: UP045
            None, "--output", "-o", help="Array file (.npy, .npz, .pt, .safetensors) or, with "
            "--similar-to, the heat map image. {stem} is replaced by each image's name.")),
        inspect.Parameter("out_dir", kw, annotation=Optional[str], default=typer.Option(  # noqa: UP045
            None, "--out-dir", help="Write DIR/STEM.FORMAT per image (plus STEM.pca.png with "
            "--pca-shared, STEM.similar.png with --similar-to).")),
        inspect.Parameter("array_format", kw, annotation=str, default=typer.Option(
            "npy", "--format", help="Array format with --out-dir: npy, npz, pt or "
            "safetensors.")),
        inspect.Parameter("pca", kw, annotation=Optional[str], default=typer.Option(  # noqa: UP045
            None, "--pca", help="Picture of the first three principal components as RGB "
            "(recipe in `artconv.features.pca`); {stem} as for -o.")),
        *option_parameters(FeatureOptions),
        *ui_parameters(),
    ]
    command(app, "features", features, params,
            "Per-pixel features (hypercolumns) of named layers: arrays, PCA pictures, "
            "similarity heat maps.")

