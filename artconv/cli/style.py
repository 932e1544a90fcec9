"""`artconv style CONTENT STYLE [STYLE ...]`: neural style transfer from the command line.

The engine flags are generated from `StyleOptions`. The output goes to `-o`, or by default
to CONTENT-STEM_STYLE-STEM[_...].png in the current directory (not beside the content: an
input folder stays as it was, and the file lands where the command was run).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any, Optional

import typer

from artconv.cli.common import (
    Ui,
    command,
    option_parameters,
    planned_writes,
    split_options,
    ui_parameters,
)
from artconv.errors import ArtconvError

HELP = ("Neural style transfer: paint CONTENT in the style of STYLE image(s) or a style "
        "preset. Ctrl-C saves the current image and exits with 130.")


def _parameters() -> list[inspect.Parameter]:
    from artconv.style import StyleOptions

    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("content", kw, annotation=str, default=typer.Argument(
            ..., help="The content image (a photo).", show_default=False)),
        inspect.Parameter("styles", kw, annotation=list[str], default=typer.Argument(
            ..., help="Style image(s), or names of style presets with images.",
            show_default=False)),
        inspect.Parameter("output", kw, annotation=Optional[Path],  # noqa: UP045
                          default=typer.Option(
                              None, "--output", "-o",
                              help="Output file (.png keeps the recipe inside). Default: "
                                   "CONTENT_STYLE.png in the current directory.")),
        inspect.Parameter("save_every", kw, annotation=int, default=typer.Option(
            0, "--save-every", min=0, help="Also write OUTPUT-STEM_NNNNN.png every N steps "
                                           "(0 = off).")),
        *ui_parameters(),
        *option_parameters(StyleOptions),
    ]


def style_command(**kwargs: Any) -> None:
    from artconv.imageio import SAVE_FORMATS, load_image, save_image
    from artconv.outputs import check_write_paths
    from artconv.progress import Progress
    from artconv.recipe import make_recipe
    from artconv.style import StyleOptions, StyleTransfer, build_options, resolve_styles

    overrides = split_options(StyleOptions, kwargs)
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    content_path = Path(kwargs["content"])
    sources = resolve_styles(kwargs["styles"])
    options = build_options(sources, kwargs["preset"], overrides)
    options.blend_weights(len(sources.images))  # fail before the network loads
    inputs = [content_path, *[Path(p) for p in sources.images]]
    init_image = [Path(options.init)] if options.init not in ("content", "noise") else []
    output = kwargs["output"] or Path.cwd() / (
        "_".join([content_path.stem, *sources.names]) + ".png")
    if output.suffix.lower() not in SAVE_FORMATS:
        raise ArtconvError(f"{output}: unsupported output format '{output.suffix}' (use "
                           f"{', '.join(sorted(SAVE_FORMATS))})")
    save_every = kwargs["save_every"]
    steps = sum(options.iterations_at(i) for i in range(len(options.ladder())))
    check_write_paths(
        planned_writes("--output" if kwargs["output"] else "output", output,
                       [("--save-every", _step_path(output, k))
                        for k in (range(save_every, steps + 1, save_every) if save_every
                                  else ())]),
        [*inputs, *init_image])

    content = load_image(content_path)  # read everything before the network loads
    styles = [load_image(p) for p in sources.images]
    st = StyleTransfer(options, progress=Progress(quiet=ui.quiet or ui.json))
    st.check_sizes(content.shape[-2:], [s.shape[-2:] for s in styles],
                   content_name=str(content_path), style_names=[str(p) for p in sources.images])
    recipe = make_recipe("style", options, weights=st.fx.identity, inputs=inputs,
                         device=st.device, precision=st.precision,
                         loss_weights=dataclasses.asdict(st.weights), scales=options.ladder())

    def callback(info: Any) -> None:
        if save_every and info.total_step % save_every == 0:
            step_path = _step_path(output, info.total_step)
            save_image(info.image[0], step_path, recipe={**recipe, "step": info.total_step},
                       inputs=inputs)

    ui.say(f"{content_path.name}: {options.output_size} px, {st.device} {st.precision}")
    start = time.perf_counter()
    try:
        result = st.run(content, styles, callback=callback if save_every else None)
    except KeyboardInterrupt:
        _save_interrupted(st, output, recipe, inputs)
        raise typer.Exit(130) from None
    save_image(result[0], output, recipe=recipe, inputs=inputs)
    seconds = time.perf_counter() - start
    ui.say(f"wrote {output} ({result.shape[-1]}x{result.shape[-2]}, {seconds:.1f} s)")
    ui.result({"output": str(output), "width": result.shape[-1], "height": result.shape[-2],
               "seconds": round(seconds, 3), "losses": st.last_figures,
               "loss_weights": dataclasses.asdict(st.weights)})


def _step_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")


def _save_interrupted(st: Any, output: Path, recipe: dict[str, Any],
                      inputs: list[Path]) -> None:
    from artconv.cli.common import console
    from artconv.imageio import save_image

    image = st.current_image()
    if image is None or not bool(image.isfinite().all()):
        console.print("interrupted: no usable image yet, nothing written", highlight=False)
        return
    save_image(image[0], output, recipe={**recipe, "interrupted": True}, inputs=inputs)
    console.print(f"interrupted: wrote the current image to {output}", highlight=False)


def register(app: typer.Typer) -> None:
    command(app, "style", style_command, _parameters(), HELP)

