"""Clips on the command line: `artconv style CLIP STYLE`, `artconv dream CLIP` (the branches
the style and dream commands take when their input is a clip, a frames folder or a glob of
frames) and `artconv video-stats OUT --input CLIP` (the flicker measure).

The clip flags come from `VideoOptions`; torch, PyAV and OpenCV load inside the commands.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import typer

from artconv.cli.common import Ui, console, option_parameters, split_options, stdout
from artconv.io.files import beside_input, input_stem, url_of
from artconv.video.options import VideoOptions

PANEL = "Clips (CONTENT a video, a frames folder or 'frames/*.png')"


def video_parameters(partial: bool = True) -> list[inspect.Parameter]:
    """The clip flags of `style` and `dream` (and their batches): every VideoOptions field
    and, unless `partial` is False, --partial."""
    params = option_parameters(VideoOptions)
    for p in params:
        p.default.rich_help_panel = PANEL
    if partial:
        params.append(inspect.Parameter(
            "partial", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
            default=typer.Option(False, "--partial", rich_help_panel=PANEL,
                                 help="Clips: on Ctrl-C (or a re-run stopped early) encode "
                                      "the frames finished so far into the output.")))
    return params


def pop_video(kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Take the clip flags out of a command's kwargs: (the VideoOptions given, --partial)."""
    given = {k: v for k, v in split_options(VideoOptions, kwargs).items() if v is not None}
    return given, bool(kwargs.pop("partial", False))


def is_video_input(text: str | Path) -> bool:
    from artconv.video.io import is_video_input as check

    return check(text)


def refuse_clip_flags(given: dict[str, Any], partial: bool, what: str) -> None:
    """Clip flags on a still image are a mistake worth naming."""
    from artconv.errors import ArtconvError
    from artconv.options import flag

    if given or partial:
        name = flag(next(iter(given))) if given else "--partial"
        raise ArtconvError(f"{name}: only for clips, and {what} is a still image")


def clip_stem(source: str | Path) -> str:
    """A name for the outputs of a clip, a frames folder or a glob of frames."""
    from artconv.video.io import is_clip

    path = Path(source)
    if url_of(source) is not None or is_clip(path):
        return input_stem(source)
    if path.is_dir():
        return path.resolve().name
    return path.parent.resolve().name or "frames"


def check_clip_output(output: Path) -> None:
    from artconv.errors import ArtconvError
    from artconv.video.io import OUTPUT_FORMATS, is_frames_output

    if not is_frames_output(output) and output.suffix.lower() not in OUTPUT_FORMATS:
        raise ArtconvError(f"{output}: unsupported video format '{output.suffix}' (use "
                           f"{', '.join(sorted(OUTPUT_FORMATS))}, or a folder/ for PNG "
                           "frames)")


# -- style and dream on a clip -----------------------------------------------------------------
def style_clip(kwargs: dict[str, Any], given: dict[str, Any], partial: bool) -> None:
    """`artconv style CLIP STYLE ...`."""
    from artconv.errors import ArtconvError
    from artconv.presets import options_for, resolve_sources
    from artconv.style import StyleOptions

    if kwargs.get("save_every"):
        raise ArtconvError("--save-every: not for clips (every finished frame is kept in "
                           "the work folder)")
    VideoOptions.check_engine("style", given, "style")
    video = VideoOptions.from_dict(given, source="clip options")
    overrides = split_options(StyleOptions, kwargs)
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    source = kwargs["content"]
    sources = resolve_sources(kwargs["styles"], "style")
    options = options_for("style", kwargs["preset"], overrides, named=sources.presets)
    options.blend_weights(len(sources.images))
    output = kwargs["output"] or Path.cwd() / ("_".join([clip_stem(source), *sources.names])
                                               + ".mp4")
    inputs = [Path(source), *[Path(p) for p in sources.images]]
    _run(options, "style", source, output, inputs, video, partial, ui, sources.images)


def dream_clip(image: Path, output: Path | None, options: Any, given: dict[str, Any],
               partial: bool, ui: Ui) -> None:
    """`artconv dream CLIP`."""
    from artconv.errors import ArtconvError

    if options.frames:
        raise ArtconvError("--frames: zoom videos start from a still image, not a clip")
    VideoOptions.check_engine("dream", given, "dream")
    video = VideoOptions.from_dict(given, source="clip options")
    from artconv.video.io import is_clip

    # beside the clip, or beside the folder that holds the frames
    base = image if is_clip(image) or image.is_dir() else image.parent
    output = output or beside_input(base, f"{clip_stem(image)}_dream.mp4")
    inputs = [image] + [Path(p) for p in (options.guide, options.mask) if p]
    _run(options, "dream", image, output, inputs, video, partial, ui, [])


def fast_clip(engine_name: str, options: Any, kwargs: dict[str, Any], given: dict[str, Any],
              partial: bool) -> None:
    """`artconv style CLIP --model M`: the trained network frame by frame
    (`artconv.video.feedforward`)."""
    from artconv.fast.pretrained import PUBLISHED

    VideoOptions.check_engine(engine_name, given, "--model")
    video = VideoOptions.from_dict(given, source="clip options")
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    source = kwargs["content"]
    stem = options.model if options.model in PUBLISHED else Path(options.model).stem
    output = kwargs["output"] or Path.cwd() / f"{clip_stem(source)}_{stem}.mp4"
    _run(options, engine_name, source, output, [Path(source)], video, partial, ui, [])


def _run(options: Any, engine_name: str, source: Any, output: Path, inputs: list[Path],
         video: VideoOptions, partial: bool, ui: Ui, style_paths: list[Any]) -> None:
    from artconv import registry
    from artconv.engine import Interrupted
    from artconv.io.images import load_image
    from artconv.outputs import files_read
    from artconv.progress import Progress
    from artconv.video.clip import run_clip
    from artconv.video.io import probe
    from artconv.video.work import (
        check_clip_writes,
        check_selection,
        check_work_folder,
        clip_identity,
        frames_done,
        work_folder,
    )

    output = Path(output)
    check_clip_output(output)
    # before anything is decoded or loaded
    check_clip_writes(output, files_read(inputs, [options.to_dict()]))
    info = probe(source, video)
    check_selection(info, video)
    check_work_folder(output, clip_identity(engine_name, options, video, inputs))
    styles = [load_image(p, options.style_size) for p in style_paths]
    spec = registry.get(engine_name)
    engine = spec.engine(options)
    hw = (info.height, info.width)
    if spec.takes_styles:
        engine.check_sizes(hw, [s.shape[-2:] for s in styles], content_name=str(source),
                           style_names=[str(p) for p in style_paths])
    elif engine_name == "dream":
        from artconv.io.images import fit_longest

        engine.check_size(fit_longest(hw, options.size) if options.size else hw,
                          what=str(source))
    folder = work_folder(output)
    total = info.selected(video)
    ui.say(f"{Path(source).name}: {total or '?'} frames at {float(info.fps / video.every):g} "
           f"fps, {info.width}x{info.height}; {engine.device} {engine.precision}; frames "
           f"kept in {folder}")
    started = time.perf_counter()
    with Progress(quiet=ui.quiet or ui.json, console=console, transient_tasks=True) as progress:
        bar = progress.task("frames", total)
        bar.update(frames_done(folder) if folder.is_dir() else 0)
        try:
            result = run_clip(engine, source, output, video=video, styles=styles,
                              inputs=inputs, display=progress.on_step,
                              on_frame=lambda done, total: bar.update(1), partial=partial)
        except Interrupted:
            done = frames_done(folder)
            wrote = f"; encoded them into {output}" if partial and done and \
                output.is_file() else ""
            console.print(f"interrupted: {done} finished frames kept in {folder}{wrote}; run "
                          "the same command again to continue", highlight=False)
            raise typer.Exit(130) from None
    seconds = time.perf_counter() - started
    where = output if result.encoded else folder
    per_frame = result.times.engine / max(result.times.frames, 1)
    rate = result.new / seconds if seconds > 0 else 0.0
    ui.say(f"wrote {where} ({result.frames} frames, {result.new} new, {seconds:.1f} s, "
           f"{per_frame:.2f} s a frame, {rate:.2f} frames/s)")
    ui.result({"output": str(where), "frames": result.frames, "new_frames": result.new,
               "work_folder": str(folder), "encoded": result.encoded,
               "seconds": round(seconds, 3), "seconds_per_frame": round(per_frame, 3),
               "frames_per_second": round(rate, 3),
               "flow_seconds": round(result.times.flow, 3),
               "flow_wait_seconds": round(result.times.flow_wait, 3),
               "scenes": result.times.scenes})


# -- video-stats -------------------------------------------------------------------------------
def video_stats(
    output: Path = typer.Argument(..., help="A clip (or frames folder) artconv made."),
    input: str = typer.Option(..., "--input", "-i",
                              help="The clip (or frames) it was made from."),
    flow: str = typer.Option("dis", "--flow", help="Flow for the measure: dis or raft."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Flicker: the temporal warping error (Lai et al. 2018) of OUTPUT against the optical
    flow of INPUT (mean squared difference of each frame and the previous one warped, on
    pixels visible in both; [0,1] pixels), next to the losses its recipe records."""
    from artconv.video.flow import FlowEstimator
    from artconv.video.io import read_clip_recipe, read_frames
    from artconv.video.stats import warping_error

    recipe = read_clip_recipe(output)  # {} for a clip made elsewhere
    selection = {k: v for k, v in (recipe.get("video") or {}).items()
                 if k in ("start", "duration", "every", "fps")}
    made_with = VideoOptions.from_dict(selection, source=f"{output} recipe")
    started = time.perf_counter()
    partial = bool(recipe.get("partial"))  # cut short: its frames are the input's first
    result = warping_error(read_frames(output), read_frames(input, made_with),
                           estimator=FlowEstimator(flow), partial=partial)
    figures = {"output": str(output), "input": input, "frames": result.frames,
               "warping_error": result.mean, "pairs": len(result.per_pair),
               "losses": recipe.get("losses") or {}, "partial": partial,
               "seconds": round(time.perf_counter() - started, 3)}
    if json_out:
        stdout.print_json(data=figures)
        return
    stdout.print(f"{output}: {result.frames} frames, warping error {result.mean:.3e} "
                 f"(mean over {len(result.per_pair)} pairs; RMS "
                 f"{255 * result.mean ** 0.5:.2f} of 255)", highlight=False)
    if partial:
        stdout.print(f"a partial output: its {result.frames} frames against the input's "
                     f"first {result.frames}", highlight=False)
    if figures["losses"]:
        stdout.print("losses (mean per frame): " + ", ".join(
            f"{k} {v:.4g}" for k, v in figures["losses"].items()), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("video-stats")(video_stats)


__all__ = ["clip_stem", "dream_clip", "fast_clip", "pop_video", "refuse_clip_flags",
           "register", "style_clip", "video_parameters"]
