"""`artconv style CONTENT STYLE [STYLE ...]`: neural style transfer from the command line.

The engine flags are generated from `StyleOptions`. The output goes to `-o`, or by default
to CONTENT-STEM_STYLE-STEM[_...].png in the current directory (not beside the content: an
input folder stays as it was, and the file lands where the command was run).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from artconv.cli.common import (
    Ui,
    check_picture_suffix,
    command,
    console,
    option_parameters,
    planned_writes,
    run_job,
    split_options,
    ui_parameters,
)
from artconv.cli.video import (
    fast_clip,
    is_video_input,
    pop_video,
    refuse_clip_flags,
    style_clip,
    video_parameters,
)
from artconv.errors import ArtconvError
from artconv.io.files import input_stem

HELP = ("Neural style transfer: paint CONTENT in the style of STYLE image(s) or a style "
        "preset; or with --model M (no STYLE), run a trained style network on it in a "
        "fraction of a second. Ctrl-C saves the current image and exits with 130.")


def routed_parameters(engine: str) -> list[inspect.Parameter]:
    """The flags of the engines routed from `engine` (registry `via`: the fast engine's
    --model and --per-pass for style) that `engine`'s own record does not have already."""
    from artconv import registry

    have = {f.name for f in dataclasses.fields(registry.options_class(engine))}
    params: list[inspect.Parameter] = []
    for spec in registry.routed(engine):
        params += option_parameters(spec.options, exclude=tuple(
            f.name for f in dataclasses.fields(spec.options) if f.name in have))
    return params


def _parameters() -> list[inspect.Parameter]:
    from artconv.style import StyleOptions

    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("content", kw, annotation=str, default=typer.Argument(
            ..., help="The content image (a photo).", show_default=False)),
        inspect.Parameter("styles", kw, annotation=Optional[list[str]],  # noqa: UP045
                          default=typer.Argument(
                              None, help="Style image(s), or names of style presets with "
                              "images (none with --model).", show_default=False)),
        inspect.Parameter("output", kw, annotation=Optional[Path],  # noqa: UP045
                          default=typer.Option(
                              None, "--output", "-o",
                              help="Output file (.png keeps the recipe inside). Default: "
                                   "CONTENT_STYLE.png in the current directory.")),
        inspect.Parameter("save_every", kw, annotation=int, default=typer.Option(
            0, "--save-every", min=0, help="Also write OUTPUT-STEM_NNNNN.png every N steps "
                                           "(0 = off).")),
        inspect.Parameter("resume", kw, annotation=bool, default=typer.Option(
            False, "--resume", help="Write each finished scale as OUTPUT-STEM_scalePX.EXT, and "
                                    "start after the last such scale an earlier run left.")),
        *ui_parameters(),
        *option_parameters(StyleOptions),
        *routed_parameters("style"),
        *video_parameters(),
    ]


def style_command(**kwargs: Any) -> None:
    from artconv import registry
    from artconv.presets import options_for, resolve_sources
    from artconv.style import StyleOptions

    clip_options, partial = pop_video(kwargs)
    # the routed engines' own flags (--model, --per-pass); shared ones are StyleOptions'
    own = {p.name for p in routed_parameters("style")}
    given = {k: kwargs.pop(k) for k in own if kwargs.get(k) is not None}
    for k in own:
        kwargs.pop(k, None)
    engine, values = registry.route("style", {**split_options(StyleOptions, dict(kwargs)),
                                              **given})
    if engine != "style":
        _run_routed(engine, values, kwargs, clip_options, partial)
        return
    if not kwargs["styles"]:
        raise ArtconvError("STYLE: give a style image or preset (or --model M for a trained "
                           "style network)")
    if is_video_input(kwargs["content"]):  # a clip, a frames folder or 'frames/*.png'
        style_clip(kwargs, clip_options, partial)
        return
    refuse_clip_flags(clip_options, partial, kwargs["content"])

    overrides = split_options(StyleOptions, kwargs)
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    content_path = Path(kwargs["content"])
    sources = resolve_sources(kwargs["styles"], "style")
    options = options_for("style", kwargs["preset"], overrides, named=sources.presets)
    options.blend_weights(len(sources.images))  # fail before the network loads
    inputs = [content_path, *[Path(p) for p in sources.images]]
    output = kwargs["output"] or Path.cwd() / (
        "_".join([input_stem(content_path), *sources.names]) + ".png")
    check_picture_suffix(output)
    from artconv.io.images import check_depth

    check_depth(output, options.bit_depth)
    _check_writes(options, output, inputs, kwargs["save_every"],
                  "--output" if kwargs["output"] else "output", kwargs["resume"])
    _stylize(options, content_path, inputs, output, kwargs["save_every"], ui,
             kwargs["resume"])


def _run_routed(engine: str, values: dict[str, Any], kwargs: dict[str, Any],
                clip_options: Any, partial: Any) -> None:
    """`artconv style PHOTO --model M`: the fast engine (registry `route`), one pass."""
    from artconv.fast.pretrained import PUBLISHED
    from artconv.io.images import check_depth
    from artconv.outputs import check_write_paths, files_read
    from artconv.presets import options_for

    if kwargs["styles"]:
        raise ArtconvError(f"{kwargs['styles'][0]}: a style argument and --model: the model "
                           "is the style; give one of them")
    content = kwargs["content"]
    for flag_, given in (("--save-every", kwargs["save_every"]), ("--resume", kwargs["resume"])):
        if given:
            raise ArtconvError(f"{flag_}: does not apply with --model (one pass, no steps)")
    options = options_for(engine, kwargs["preset"], values)
    if is_video_input(content):  # a clip, a frames folder or 'frames/*.png'
        fast_clip(engine, options, kwargs, clip_options, partial)
        return
    refuse_clip_flags(clip_options, partial, content)
    ui = Ui(quiet=kwargs["quiet"], json=kwargs["json_out"])
    content_path = Path(content)
    model = Path(options.model)
    stem = options.model if options.model in PUBLISHED else model.stem
    output = kwargs["output"] or Path.cwd() / f"{content_path.stem}_{stem}.png"
    check_picture_suffix(output)
    check_depth(output, options.bit_depth)
    check_write_paths(planned_writes("--output" if kwargs["output"] else "output", output),
                      files_read([content_path], [options.to_dict()]))
    _run_fast(engine, options, content_path, output, ui)


def _run_fast(engine: str, options: Any, content_path: Path, output: Path, ui: Ui) -> None:
    from artconv.batch.jobs import Job
    from artconv.batch.local import load_hw

    load_hw(content_path, options.size)  # an unreadable photo fails before the model loads
    fast, result = run_job(
        Job(engine, str(content_path), str(output)), options, ui,
        interrupted=lambda saved: _said_interrupted(saved, output),
        prepare=lambda fast: ui.say(f"{content_path.name}: {fast.model.name}, {fast.device} "
                                    f"{fast.precision}"))
    h, w = load_hw(output, None)
    ui.say(f"wrote {output} ({w}x{h}, {result.seconds:.2f} s)")
    ui.result({"output": str(output), "width": w, "height": h,
               "seconds": round(result.seconds, 3), "model": fast.model.name,
               "sha256": fast.model.sha256})


def _check_writes(options: Any, output: Path, inputs: list[Path], save_every: int,
                  label: str, resume: bool = False) -> None:
    """The output and every --save-every step, checked before any work."""
    from artconv.outputs import check_write_paths, files_read

    steps = sum(options.iterations_at(i) for i in range(len(options.ladder())))
    every = range(save_every, steps + 1, save_every) if save_every else ()
    scales = [("--resume", _scale_path(output, n)) for n in options.ladder()] if resume else []
    check_write_paths(planned_writes(label, output,
                                     [("--save-every", _step_path(output, k)) for k in every]
                                     + scales),
                      files_read(inputs, [options.to_dict()]))


def _stylize(options: Any, content_path: Path, inputs: list[Path], output: Path,
             save_every: int, ui: Ui, resume: bool = False) -> None:
    from artconv import registry
    from artconv.batch.jobs import Job
    from artconv.batch.local import load_hw

    write = registry.get("style").writer
    # Sizes from the headers before the network loads; the runner decodes each image at the
    # size the run needs: a huge photo is shrunk as it is decoded, never held at full size.
    content_hw = load_hw(content_path, options.output_size)
    style_hws = [load_hw(p, options.style_size) for p in inputs[1:]]
    ladder, init = options.ladder(), None
    identity = resume_identity("style", options, inputs) if resume else None
    if resume:
        options, init = _resume_point(options, output, ui, identity, content_hw)

    def save(st: Any, step: Any) -> None:
        if save_every and step.done % save_every == 0:
            write(st, step.image[0], _step_path(output, step.done), inputs=inputs,
                  step=step.done)
        if resume and step.step == step.steps:  # a finished scale, to resume from
            longest = ladder[len(ladder) - step.stages + step.stage - 1]
            write(st, step.image[0], _scale_path(output, longest), inputs=inputs,
                  scale=longest, resume=identity)

    def prepare(st: Any) -> None:
        st.check_sizes(content_hw, style_hws, content_name=str(content_path),
                       style_names=list(map(str, inputs[1:])))
        ui.say(f"{content_path.name}: {options.output_size} px, {st.device} {st.precision}")

    # The display goes to the engine apart from `save`: a display alone lets Adam read its
    # losses from the device every few steps instead of every step.
    st, result = run_job(Job("style", str(content_path), str(output),
                             tuple(map(str, inputs[1:]))), options, ui,
                         interrupted=lambda saved: _said_interrupted(saved, output),
                         prepare=prepare, callback=save if save_every or resume else None,
                         inputs=None if init is None else {"init": init})
    h, w = load_hw(output, None)
    ui.say(f"wrote {output} ({w}x{h}, {result.seconds:.1f} s)")
    ui.result({"output": str(output), "width": w, "height": h,
               "seconds": round(result.seconds, 3), "losses": st.last_figures,
               "loss_weights": dataclasses.asdict(st.weights)})


def _scale_path(output: Path, longest: int) -> Path:
    return output.with_name(f"{output.stem}_scale{longest}{output.suffix}")


def resume_identity(engine: str, options: Any, inputs: list[Path]) -> dict[str, Any]:
    """What made a --resume run's scale files (kept in their recipes as "resume"): the
    engine, its options as given and every input by its content."""
    from artconv.outputs import input_record, options_by_content

    return {"engine": engine, "options": options_by_content(options.to_dict()),
            "inputs": [input_record(p) for p in inputs]}


def _resume_point(options: Any, output: Path, ui: Ui, identity: dict[str, Any],
                  content_hw: Any) -> tuple[Any, Any]:
    """(options for the scales still to run, the image to start from) after the last scale
    an earlier --resume run wrote; the options as given and None when there is none. A
    scale file another run made (other inputs or options, or the wrong size) is refused.
    Adam's moments are not saved: a resumed scale starts them afresh."""
    from artconv.errors import ArtconvError
    from artconv.io.images import fit_longest, load_image, read_recipe
    from artconv.outputs import identity_difference

    ladder = options.ladder()
    done = [i for i, n in enumerate(ladder) if _scale_path(output, n).is_file()]
    if not done:
        return options, None
    last = done[-1]
    path = _scale_path(output, ladder[last])
    try:
        made_by = read_recipe(path).get("resume")
    except ArtconvError:
        made_by = None
    why = identity_difference(made_by, identity) if isinstance(made_by, dict) else \
        "it carries no record of the run that made it"
    image = load_image(path)
    want = fit_longest(tuple(content_hw), ladder[last])
    if why is None and tuple(image.shape[-2:]) != want:
        why = (f"it is {image.shape[-1]}x{image.shape[-2]} px, this run's scale is "
               f"{want[1]}x{want[0]}")
    if why is not None:
        raise ArtconvError(f"--resume {path}: not from this run ({why}); remove "
                           f"{output.stem}_scale*{output.suffix} or choose another --output")
    ui.say(f"--resume: starting after {path.name} (scale {last + 1} of {len(ladder)})")
    rest = ladder[last + 1:] or ladder[-1:]
    steps = ([options.iterations_at(i) for i in range(last + 1, len(ladder))]
             if last + 1 < len(ladder) else [0])
    return options.replace(scales=tuple(rest), min_scale=None, size=None,
                           iterations=tuple(steps)), image[None]


def _step_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")


def _said_interrupted(saved: bool, output: Path) -> None:
    console.print(f"interrupted: wrote the current image to {output}" if saved else
                  "interrupted: no usable image yet, nothing written", highlight=False)


def register(app: typer.Typer) -> None:
    command(app, "style", style_command, _parameters(), HELP)

