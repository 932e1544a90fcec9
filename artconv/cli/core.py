"""`artconv layers`, `artconv recipe`, `artconv presets`: looking at the network and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from artconv.cli.common import console, stdout
from artconv.options import CoreOptions


def layers(
    arch: str = typer.Option("vgg19", "--arch", help="vgg16 or vgg19."),
    pooling: str = typer.Option("max", "--pooling", help="max, avg, strided or none."),
    size: int = typer.Option(224, "--size", min=1, help="Input size (square) for the sizes."),
    backbone: Optional[str] = typer.Option(None, "--backbone",  # noqa: UP045
                                           help="Describe an own FILE.py:FUNCTION instead."),
    avg_rescale: bool = typer.Option(
        False, "--avg-rescale", help="With --pooling avg, show each pool's calibrated "
        "rescale factor (random weights) in the note column."),
    seamless: bool = typer.Option(
        False, "--seamless", help="Circular padding in every convolution and pool, as "
        "--seamless runs the network (the sizes are those without)."),
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """The named layers: kind, channels, downsampling, output size, receptive field, cost."""
    import warnings

    from artconv.nets.extractor import FeatureExtractor

    opts = CoreOptions.from_dict({"arch": arch, "pooling": pooling, "backbone": backbone,
                                  "weights": "random", "avg_rescale": avg_rescale,
                                  "seamless": seamless})
    with warnings.catch_warnings():  # random weights are fine: only shapes are shown
        warnings.simplefilter("ignore")
        fx = FeatureExtractor.from_options(opts)
    infos = fx.describe(size)
    unusable = ""
    if fx.unusable:
        rest = len(fx.layer_names) - len(infos) - 1
        unusable = f"note: {fx.unusable}: " + (
            f"it and the {rest} layer(s) after it cannot be used and are not listed" if rest
            else "it cannot be used and is not listed")
    if json_out:
        stdout.print_json(json.dumps([i.__dict__ for i in infos]))
        if unusable:
            console.print(escape(unusable), highlight=False, soft_wrap=True)
        return
    stdout.print(_table(fx, infos, f"{fx.identity.split(':')[0]}, pooling={pooling}"
                              f"{', seamless' if seamless else ''}, input {size}x{size}"))
    _notes(fx, infos, opts, size, unusable)


def _table(fx: Any, infos: list[Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in [("layer", "left"), ("kind", "left"), ("channels", "right"),
                         ("down", "right"), ("output", "right"), ("RF px", "right"),
                         ("GFLOP", "right"), ("cum. GFLOP", "right"), ("note", "left")]:
        table.add_column(col, justify=justify)
    total = 0.0
    for i in infos:
        total += i.gflops
        table.add_row(i.name, i.kind, str(i.channels), f"x{i.stride}",
                      f"{i.width}x{i.height}", str(i.receptive_field),
                      f"{i.gflops:.2f}" if i.gflops else "", f"{total:.1f}", i.note)
    return table


def _notes(fx: Any, infos: list[Any], opts: CoreOptions, size: int, unusable: str) -> None:
    """The lines under the table: total compute, what the pooling means, layers too deep."""
    total = sum(i.gflops for i in infos)
    caption = f"forward to the last layer: {total:.1f} GFLOP"
    if opts.pooling != "max":
        base = sum(i.gflops for i in _max_twin(opts).describe(size))
        caption += f" ({total / base:.1f}x the compute of max pooling)"
    if opts.pooling == "strided":
        caption += ("; strided = pools removed, next conv strides 2 with its ImageNet weights"
                    " (aliased subsampling, not a trained all-conv net)")
    if opts.pooling == "none":
        caption += "; none = a-trous: full resolution everywhere, exact on the stride grid"
    if opts.seamless:
        caption += "; seamless = every convolution and pool pads circularly (wraps around)"
    stdout.print(caption, highlight=False)
    if unusable:
        stdout.print(escape(unusable), highlight=False)
    empty = next((i for i in infos if i.height < 1 or i.width < 1), None)
    if empty is not None:
        need = fx.min_size([empty.name])
        deepest = fx.min_size([infos[-1].name])
        last = "" if empty is infos[-1] else \
            f", {infos[-1].name} (the deepest) {deepest}x{deepest} px"
        stdout.print(f"note: input {size}x{size} is too small from {empty.name} on (no "
                     f"output); {empty.name} needs at least {need}x{need} px{last}",
                     highlight=False)


def _max_twin(opts: CoreOptions):
    import warnings

    from artconv.nets.extractor import FeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureExtractor.from_options(opts.replace(pooling="max", avg_rescale=False))


def recipe(path: Path = typer.Argument(
        ..., help="An output artconv wrote: an image, a feature array (.npy, .npz, .pt, "
        ".safetensors), a trained style model (.safetensors: how it was trained), a clip "
        "(.mp4 ...: its sidecar, or while it is unfinished its work "
        "folder's last frame), a folder of frames, or a .json sidecar.")) -> None:
    """Print the recipe (options, seed, weights, versions) stored with an output."""
    from artconv.io.recipe import read_any_recipe

    stdout.print_json(json.dumps(read_any_recipe(path)))


def presets(
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    fetch: bool = typer.Option(
        False, "--fetch", help="Download every preset's images given by URL into the cache "
        "now (for offline use later); exit 1 if any fails."),
) -> None:
    """List the named presets in styles/ with their one-line descriptions, the licence and
    source of their images; --fetch downloads those images."""
    from artconv.presets import list_presets

    found = list_presets()
    if fetch:
        _fetch_all(found, json_out)
        return
    if json_out:
        stdout.print_json(json.dumps([{"name": p.name, "engine": p.engine,
                                       "description": p.description, "path": str(p.path),
                                       "options": p.options, "images": list(p.images),
                                       "licence": p.licence, "source": p.source}
                                      for p in found]))
        return
    table = Table(title="presets (use with --preset NAME, or a style preset as STYLE)",
                  title_justify="left")
    for col in ("name", "engine", "description", "licence"):
        table.add_column(col)
    table.add_column("source", overflow="fold")
    for p in found:
        table.add_row(p.name, p.engine, escape(p.description), escape(p.licence),
                      escape(p.source))
    stdout.print(table)


def _fetch_all(found: list[Any], json_out: bool) -> None:
    """Download each preset's URL images (a bar each), one line per file: fetched, already
    cached, or failed with the URL, the reason and where to put the file by hand."""
    from artconv.errors import ArtconvError
    from artconv.io.files import url_cache_path
    from artconv.presets import download_image

    results: list[dict[str, Any]] = []
    for p in found:
        for url in p.urls():
            row: dict[str, Any] = {"preset": p.name, "url": url,
                                   "path": str(url_cache_path(url))}
            cached = url_cache_path(url).is_file()
            try:
                download_image(url, quiet=json_out)
                row["status"] = "cached" if cached else "fetched"
            except ArtconvError as exc:
                row.update(status="failed", error=str(exc))
            results.append(row)
            if not json_out:
                word = {"fetched": "[green]fetched[/]", "cached": "cached",
                        "failed": "[red]failed[/]"}[row["status"]]
                text = row.get("error") or f"{url} -> {row['path']}"
                stdout.print(f"{word} {escape(p.name)}: {escape(text)}", highlight=False,
                             soft_wrap=True)
    failed = sum(r["status"] == "failed" for r in results)
    if json_out:
        stdout.print_json(json.dumps(results))
    else:
        stdout.print(f"{len(results) - failed} of {len(results)} preset images in the cache"
                     + (f"; {failed} failed" if failed else "")
                     + ("" if results else " (no preset names an image by URL)"),
                     highlight=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
    app.command("recipe")(recipe)
    app.command("presets")(presets)
