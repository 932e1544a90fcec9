"""`artconv dream IMAGE`: Deep Dream an image, or a zoom video with --frames."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Optional

import typer

from artconv.cli.common import (
    Ui,
    check_picture_suffix,
    command,
    option_parameters,
    planned_writes,
    run_job,
    split_options,
    ui_parameters,
)
from artconv.cli.video import (
    dream_clip,
    is_video_input,
    pop_video,
    refuse_clip_flags,
    video_parameters,
)
from artconv.deepdream.options import DreamOptions
from artconv.io.files import beside_input, input_stem

HELP = """Deep Dream IMAGE: amplify what chosen layers see, octave by octave.

IMAGE may be a clip (.mp4, .mov, .mkv, ...), a frames folder or a glob ('frames/*.png'):
each frame is dreamed from the previous dream warped by the optical flow, blended with the
new frame (--frame-blend), and the clip is written as IMAGE_dream.mp4 with its sound.

Writes IMAGE_dream.png next to the input (for a URL, in the current folder) unless -o is
given (never over the input); with
--frames N, writes frame_000001.png ... into the folder IMAGE_dream_frames/ (or -o FOLDER),
continuing after any frames already there. The output carries its recipe
(`artconv recipe OUT`). Ctrl-C saves the image so far and exits with status 130."""


def run_dream(image: Path, output: Path | None, preset: str | None, quiet: bool,
              json_out: bool, **kwargs: Any) -> None:
    from artconv.presets import find_preset, options_for

    ui = Ui(quiet=quiet, json=json_out)
    clip_options, partial = pop_video(kwargs)
    found = find_preset(preset) if preset else None
    options = options_for("dream", found, split_options(DreamOptions, kwargs))
    if options.guide is None and found is not None and found.images:
        options = options.replace(guide=str(found.image_paths()[0]))
    if is_video_input(image):
        dream_clip(image, output, options, clip_options, partial, ui)
        return
    refuse_clip_flags(clip_options, partial, str(image))
    video = options.frames > 0
    given = output is not None
    if output is None:
        output = beside_input(image, f"{input_stem(image)}_dream"
                              + ("_frames" if video else ".png"))
    elif not video:  # fail before dreaming
        check_picture_suffix(output)
    inputs = [image] + [Path(p) for p in (options.guide, options.mask) if p]
    _check_writes(options, output, inputs, "--output" if given else "--frames" if video
                  else "output")
    if video:
        _zoom_video(options, image, output, inputs, ui)
    else:
        _dream_picture(options, image, output, ui)


def _check_writes(options: DreamOptions, output: Path, inputs: list[Path], label: str) -> None:
    """Every file the dream will write, checked before the network loads."""
    from artconv.outputs import check_write_paths, files_read, frame_path, frames_done

    if options.frames > 0:
        from artconv.deepdream.zoom import gif_path

        # Frames already there are kept, not rewritten: the first missing one stands for
        # the rest, whose names differ by construction and share its folder.
        done = frames_done(output, options.frames)
        writes = [(label, frame_path(output, done + 1))] if done < options.frames else []
        if options.gif:
            writes.append(("--gif", gif_path(output)))
    else:
        writes = planned_writes(label, output)
    check_write_paths(writes, files_read(inputs, [options.to_dict()]))


def _dreamer(options: DreamOptions, image: Path, progress: Any) -> tuple[Any, Any]:
    """The engine (reporting to `progress`) and the input image, its size checked."""
    from artconv import registry
    from artconv.io.images import load_image

    source = load_image(image, options.size)
    dreamer = registry.get("dream").engine(options, progress=progress)
    dreamer.check_size(source.shape[-2:], what=str(image),
                       where=f" at --size {options.size}" if options.size else "")
    return dreamer, source


def _dream_picture(options: DreamOptions, image: Path, output: Path, ui: Ui) -> None:
    from artconv.batch.jobs import Job
    from artconv.batch.local import load_hw

    hw = load_hw(image, options.size)  # an unreadable image fails before the network loads

    def interrupted(saved: bool) -> None:
        ui.say(f"[yellow]interrupted[/]: saved the dream so far to {output}" if saved else
               "[yellow]interrupted[/] before the first step: nothing written")

    _, result = run_job(Job("dream", str(image), str(output)), options, ui,
                        interrupted=interrupted, prepare=lambda dreamer: dreamer.check_size(
                            hw, what=str(image),
                            where=f" at --size {options.size}" if options.size else ""))
    h, w = load_hw(output, None)
    ui.say(f"wrote {output}")
    ui.result({"output": str(output), "width": w, "height": h,
               "seconds": round(result.seconds, 2)})


def _zoom_video(options: DreamOptions, image: Path, output: Path, inputs: list[Path],
                ui: Ui) -> None:
    from artconv.deepdream.zoom import gif_path, write_frames
    from artconv.engine import Interrupted
    from artconv.progress import Progress

    started = time.perf_counter()
    with Progress(quiet=ui.quiet or ui.json) as progress:
        dreamer, source = _dreamer(options, image, progress)
        try:
            paths = write_frames(dreamer, source, output, inputs=inputs)
        except Interrupted:
            ui.say(f"[yellow]interrupted[/]: frames so far are in {output}; run the same "
                   "command again to continue")
            raise typer.Exit(130) from None
    seconds = round(time.perf_counter() - started, 2)
    gif = gif_path(output) if options.gif else None
    ui.say(f"wrote {len(paths)} frames to {output}" + (f" and {gif}" if gif else ""))
    ui.result({"frames": [str(p) for p in paths], "gif": gif, "seconds": seconds})


def register(app: typer.Typer) -> None:
    params = [
        inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                          default=typer.Argument(..., help="The image to dream, or a clip, a "
                                                 "frames folder or 'frames/*.png'.")),
        inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Optional[Path],  # noqa: UP045 - typer needs this form
                          default=typer.Option(
                              None, "--output", "-o",
                              help="Output image (default IMAGE_dream.png next to the input) "
                                   "or, with --frames, the frames folder "
                                   "(default IMAGE_dream_frames).")),
        *option_parameters(DreamOptions),
        *ui_parameters(),
        *video_parameters(),
    ]
    command(app, "dream", run_dream, params, HELP)
