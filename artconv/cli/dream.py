"""`artconv dream IMAGE`: Deep Dream an image, or a zoom video with --frames."""

from __future__ import annotations

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
from artconv.deepdream import DreamOptions
from artconv.errors import ArtconvError

HELP = """Deep Dream IMAGE: amplify what chosen layers see, octave by octave.

Writes IMAGE_dream.png next to the input unless -o is given (never over the input); with
--frames N, writes frame_0001.png ... into the folder IMAGE_dream_frames/ (or -o FOLDER),
continuing after any frames already there. The output carries its recipe
(`artconv recipe OUT`). Ctrl-C saves the image so far and exits with status 130."""


def run_dream(image: Path, output: Path | None, preset: str | None, quiet: bool,
              json_out: bool, **kwargs: Any) -> None:
    from artconv.deepdream import Dreamer, DreamInterrupted, frame_paths, gif_path
    from artconv.imageio import SAVE_FORMATS, load_image, save_image
    from artconv.outputs import check_write_paths
    from artconv.presets import find_preset, options_for
    from artconv.progress import Progress

    ui = Ui(quiet=quiet, json=json_out)
    found = find_preset(preset) if preset else None
    if found is not None and found.engine != "dream":
        raise ArtconvError(f"--preset {preset}: a {found.engine} preset, not a dream one")
    options = options_for(DreamOptions, found, split_options(DreamOptions, kwargs))
    if options.guide is None and found is not None and found.images:
        options = options.replace(guide=str(found.image_paths()[0]))
    video = options.frames > 0
    given = output is not None
    if output is None:
        output = image.with_name(f"{image.stem}_dream" + ("_frames" if video else ".png"))
    elif not video and output.suffix.lower() not in SAVE_FORMATS:  # fail before dreaming
        raise ArtconvError(f"{output}: unsupported output format '{output.suffix}' (use "
                           f"{', '.join(sorted(SAVE_FORMATS))})")
    inputs = [image] + ([Path(options.guide)] if options.guide else [])
    label = "--output" if given else "--frames" if video else "output"
    if video:
        # Frames already there are kept, not rewritten (as Dreamer.frames counts them): the
        # first missing one stands for the rest, whose names differ by construction and
        # share its folder.
        todo = next((f for f in frame_paths(output, options.frames) if not f.is_file()), None)
        writes = [(label, todo)] if todo is not None else []
        if options.gif:
            writes.append(("--gif", gif_path(output)))
    else:
        writes = planned_writes(label, output)
    check_write_paths(writes, inputs)  # before the network loads
    source = load_image(image, options.size)
    started = time.perf_counter()
    with Progress(quiet=quiet or json_out) as progress:
        dreamer = Dreamer(options, progress=progress)
        dreamer.check_size(source.shape[-2:], what=str(image),
                           where=f" at --size {options.size}" if options.size else "")
        try:
            if video:
                paths = dreamer.frames(source, output, inputs=inputs)
            else:
                result = dreamer.run(source)
        except DreamInterrupted as stopped:
            if video:
                ui.say(f"[yellow]interrupted[/]: frames so far are in {output}; run the same "
                       "command again to continue")
            elif stopped.image is None:
                ui.say("[yellow]interrupted[/] before the first step: nothing written")
            else:
                save_image(stopped.image, output, inputs=inputs,
                           recipe=dreamer.recipe(inputs, interrupted=True))
                ui.say(f"[yellow]interrupted[/]: saved the dream so far to {output}")
            raise typer.Exit(130) from None
    seconds = round(time.perf_counter() - started, 2)
    if video:
        gif = gif_path(output) if options.gif else None
        ui.say(f"wrote {len(paths)} frames to {output}" + (f" and {gif}" if gif else ""))
        ui.result({"frames": [str(p) for p in paths], "gif": gif, "seconds": seconds})
        return
    save_image(result, output, recipe=dreamer.recipe(inputs), inputs=inputs)
    ui.say(f"wrote {output}")
    ui.result({"output": str(output), "width": result.shape[-1], "height": result.shape[-2],
               "seconds": seconds})


def register(app: typer.Typer) -> None:
    params = [
        inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                          default=typer.Argument(..., help="The image to dream.")),
        inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Optional[Path],  # noqa: UP045 - typer needs this form
                          default=typer.Option(
                              None, "--output", "-o",
                              help="Output image (default IMAGE_dream.png next to the input) "
                                   "or, with --frames, the frames folder "
                                   "(default IMAGE_dream_frames).")),
        *option_parameters(DreamOptions),
        *ui_parameters(),
    ]
    command(app, "dream", run_dream, params, HELP)
