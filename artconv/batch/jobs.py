"""Batch jobs: the plain records a batch is made of, planning them, and the checks that
run before any work (nothing lost: no output over an input, no two jobs on one file).

A batch is a list of `Job` records (JSON-serialisable: engine, input, styles, output,
option overrides) that a runner executes (`artconv.batch.runner.render`). Engines are
found in `artconv.registry`; nothing here imports torch.

    jobs = artconv.batch.plan("style", "photos/*.jpg", styles=["starry.jpg"], out_dir="out")
    report = artconv.batch.render(jobs, options={"style": StyleOptions(iterations=(300,))})
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artconv import registry
from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes, input_stem, list_images, url_of
from artconv.options import CoreOptions, field_name, field_names
from artconv.outputs import Owned, check_write_paths, files_read
from artconv.presets import is_preset_name

if TYPE_CHECKING:
    from artconv.progress import Progress

# At import, for older callers; the checks below read the registry itself.
ENGINES = tuple(registry.ENGINES)
DEFAULT_TEMPLATES = {name: spec.template for name, spec in registry.ENGINES.items()}
_JOB_KEYS = {"engine", "input", "styles", "output", "options", "id", "video"}
# A job whose input is a clip (or a frames folder or glob) writes a clip; an image name in
# the template becomes this.
CLIP_SUFFIX = ".mp4"


# -- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One output to make. `options` are overrides on top of the batch's options."""

    engine: str
    input: str
    output: str
    styles: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""
    # Where a manifest job came from ("jobs.jsonl:3"), for messages; not part of the record.
    where: str = field(default="", compare=False, repr=False)
    # A clip job's VideoOptions fields (artconv.video.options), over their defaults.
    video: Mapping[str, Any] = field(default_factory=dict)
    # One segment (first, last or None) of a clip split by --segment-frames: a Ray task
    # of its own (artconv.video.segments); None for the whole job.
    segment: tuple[int, int | None] | None = None

    @property
    def is_clip(self) -> bool:
        """The input is a clip, a frames folder or a glob of frames: one job, one clip."""
        return is_clip_input(self.input)

    def to_dict(self) -> dict[str, Any]:
        record = {"id": self.id, "engine": self.engine, "input": self.input,
                  "styles": list(self.styles), "output": self.output,
                  "options": dict(self.options)}
        if self.video:
            record["video"] = dict(self.video)
        if self.segment is not None:
            record["segment"] = list(self.segment)
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "job",
                  base: Path | None = None, engine: str | None = None) -> Job:
        """A job from a manifest line; relative paths resolve against `base`."""
        bad = sorted(set(data) - _JOB_KEYS)
        if bad:
            raise ArtconvError(f"{source}: unknown key {bad[0]!r} (allowed: "
                               f"{', '.join(sorted(_JOB_KEYS))})")
        engine = data.get("engine", engine or (_styles_engine() if data.get("styles") else None))
        if engine not in registry.ENGINES:
            raise ArtconvError(f"{source}: 'engine' must be one of "
                               f"{', '.join(registry.ENGINES)}, "
                               f"got {engine!r}")
        if "input" not in data:
            raise ArtconvError(f"{source}: missing 'input'")
        given = data.get("options", {})
        if isinstance(given, Mapping):  # a style job with "model" is a fast one (registry)
            try:
                routed = registry.route(engine, {str(k).replace("-", "_"): v
                                                 for k, v in given.items()})[0]
            except ArtconvError as exc:
                raise option_error(source, exc) from None
            if routed != engine and data.get("styles"):
                raise ArtconvError(f"{source}: 'styles' and option "
                                   f"'{registry.get(routed).via[1]}': the model is the "
                                   "style; give one of them")
            engine = routed
        styles = data.get("styles", ())
        styles = (styles,) if isinstance(styles, str) else styles
        if not isinstance(styles, list | tuple) or not all(isinstance(s, str) for s in styles):
            raise ArtconvError(f"{source}: 'styles' must be a path/preset or a list of them")
        styles = tuple(styles)
        if registry.get(engine).takes_styles and not styles:
            raise ArtconvError(f"{source}: a {engine} job needs 'styles'")
        options = data.get("options", {})
        if not isinstance(options, Mapping):
            raise ArtconvError(f"{source}: 'options' must be a table/object")
        try:  # bad option names and values fail now, naming the line
            registry.options_class(engine).from_dict(options, source=source)
        except ArtconvError as exc:
            raise option_error(source, exc) from None

        def resolve(p: str) -> str:
            path = Path(p).expanduser()
            return str(path if path.is_absolute() or base is None else base / path)

        content = resolve(str(data["input"]))
        video = _video_options(data.get("video"), source, content)
        output = data.get("output") or str(Path(content).parent / _clip_name(_fill(
            registry.get(engine).template, content, styles, 0, engine), content))
        return cls(engine, content, resolve(str(output)),
                   tuple(s if is_preset_name(s) else resolve(s) for s in styles),
                   # from_dict takes "avg-rescale" too; replace() (at run time) does not
                   field_names(options),
                   str(data.get("id", "")), where=source, video=video)


def is_clip_input(text: str) -> bool:
    from artconv.video.io import is_video_input

    return is_video_input(text)


def _clip_name(name: str, content: str) -> str:
    """An output name made for a clip input names a clip (an image suffix becomes .mp4)."""
    from artconv.io.files import SAVE_FORMATS

    if is_clip_input(content) and Path(name).suffix.lower() in SAVE_FORMATS:
        return str(Path(name).with_suffix(CLIP_SUFFIX))
    return name


def _video_options(value: Any, source: str, content: str) -> dict[str, Any]:
    """A manifest job's "video" table, checked against VideoOptions now (naming the line)."""
    if value is None:
        return {}
    from artconv.video.options import VideoOptions

    if not isinstance(value, Mapping):
        raise ArtconvError(f"{source}: 'video' must be a table/object of clip options")
    if not is_clip_input(content):
        raise ArtconvError(f"{source}: 'video' options need a clip (or frames) as 'input'")
    try:
        VideoOptions.from_dict(dict(value), source=source)
    except ArtconvError as exc:
        raise option_error(source, exc) from None
    return field_names(value)


def option_error(source: str, exc: ArtconvError) -> ArtconvError:
    """`exc` (an options error, worded for the command line: "--size 0: ...") reworded for
    the manifest line `source` that gave the value: "jobs.jsonl:3: option 'size': 0: ..."."""
    text = str(exc)
    if text.startswith(source):
        return exc
    m = re.match(r"--([a-z0-9][a-z0-9-]*):? (.*)", text, re.S)
    if m:
        return ArtconvError(f"{source}: option '{field_name(m[1])}': {m[2]}")
    return ArtconvError(f"{source}: {text}")


@dataclass
class JobResult:
    job: Job
    status: str  # "done", "skipped", "failed" or "interrupted"
    reason: str = ""
    seconds: float = 0.0
    # What failed it, in this process: a single CLI command raises it as it would have.
    error: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {**self.job.to_dict(), "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 3)}


@dataclass
class BatchReport:
    results: list[JobResult]
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)  # e.g. style target computations
    interrupted: bool = False  # stopped by Ctrl-C; jobs not run are marked "interrupted"

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.count("done"), "skipped": self.count("skipped"),
                "failed": self.count("failed"), "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3),
                "stats": self.stats, "jobs": [r.to_dict() for r in self.results]}

    def write(self, path: str | Path) -> Path:
        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode())


def recorder(results: list[JobResult], on_result: Callable[[JobResult], Any],
             progress: Progress) -> Callable[[JobResult], None]:
    """What every runner does as a job ends: keep it, report it, log a failure."""

    def record(result: JobResult) -> None:
        results.append(result)
        on_result(result)
        if result.status == "failed":
            progress.log(f"[red]failed[/] {result.job.output}: {result.reason}")

    return record


def reason(exc: BaseException) -> str:
    """A failed job's reason: the one-line message of an ArtconvError, else the exception."""
    if isinstance(exc, ArtconvError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


# -- planning --------------------------------------------------------------------------------
def plan(engine: str, inputs: str | Path | Sequence[str | Path], *,
         styles: Sequence[str | Path] = (), out_dir: str | Path | None = None,
         template: str | None = None, blend: bool = False,
         options: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs for every input (x every style for `style`; with `blend` every input gets one job
    with all the styles together). Output names come from `template`, with `{content}`,
    `{style}`, `{index}` and `{engine}`; the default folder is each input's own."""
    spec = registry.get(engine)
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    template = template or spec.template
    if spec.takes_styles:
        if not styles:
            raise ArtconvError(f"batch {engine}: give at least one style (--styles)")
        groups = [tuple(map(str, styles))] if blend else [(str(s),) for s in styles]
    else:
        groups = [()]
    images = _batch_inputs(items, engine, template, groups, urls=out_dir is not None)
    jobs = []
    for image in images:
        for group in groups:
            name = _clip_name(_fill(template, str(image), group, len(jobs), engine),
                              str(image))
            folder = Path(out_dir) if out_dir is not None else image.parent
            jobs.append(Job(engine, str(image), str(folder / name), group,
                            dict(options or {}), id=str(len(jobs))))
    check_collisions(jobs)
    return jobs


def _batch_inputs(items: Sequence[str | Path], engine: str, template: str,
                  groups: Sequence[tuple[str, ...]], *, urls: bool) -> list[Path]:
    """The images of `items`, less those found in folders and patterns that an earlier run
    of this batch wrote (beside its inputs, by default), so a re-run skips them instead of
    taking them as new inputs. An image named on its own is always an input; so is an
    http(s) URL (fetched when its job runs) when `urls`: there is no folder beside it."""
    pattern = _template_pattern(template, engine, groups)
    found: set[Path] = set()
    dropped: list[Path] = []
    for item in items:
        if Path(item).is_file():
            found.add(Path(item))
            continue
        clips = _clips(item)
        kept = [c for c in clips if not _clip_written_by(c, engine)]
        dropped += [c for c in clips if c not in kept]
        found.update(kept)
        if clips and not _has_images(item):  # a folder or pattern of clips only
            continue
        url = url_of(item)
        if url is not None and not Path(item).exists():
            if not urls:
                raise ArtconvError(f"{url}: a URL input needs --out-dir (its outputs cannot "
                                   "go beside it)")
            found.add(Path(url))
            continue
        for image in list_images(item):
            if _written_by(image, engine, pattern):
                dropped.append(image)
            else:
                found.add(image)
    if not found and dropped:
        raise ArtconvError(f"{dropped[0].parent}: holds only outputs of an earlier "
                           f"{engine} batch (e.g. {dropped[0].name}); give the original "
                           "images")
    return sorted(found)


def _clips(item: str | Path) -> list[Path]:
    """The clips (by extension) in a folder or matching a pattern: each is one job."""
    import glob

    from artconv.video.io import is_clip

    text = str(item)
    if Path(text).is_dir():
        return sorted(p for p in Path(text).iterdir() if is_clip(p) and p.is_file())
    if any(c in text for c in "*?["):
        return sorted(Path(p) for p in glob.glob(text, recursive=True)
                      if is_clip(p) and Path(p).is_file())
    return []


def _clip_written_by(clip: Path, engine: str) -> bool:
    """A clip an earlier batch of this engine wrote: its sidecar recipe names the engine."""
    from artconv.video.io import read_clip_recipe

    return read_clip_recipe(clip).get("engine") == engine


def _has_images(item: str | Path) -> bool:
    try:
        return bool(list_images(item))
    except ArtconvError:
        return False


def _template_pattern(template: str, engine: str,
                      groups: Sequence[tuple[str, ...]]) -> re.Pattern[str] | None:
    """A regex of the file names `template` makes for any content (last path part only)."""
    styles = "|".join(re.escape("+".join(input_stem(s) for s in g) or "none") for g in groups)
    fields = {"content": ".+", "style": f"(?:{styles})", "index": r"\d+",
              "engine": re.escape(engine)}
    regex = ""
    try:
        for literal, name, spec, conversion in string.Formatter().parse(Path(template).name):
            regex += re.escape(literal)
            if name is not None:
                plain = not spec and not conversion
                regex += fields.get(name, ".+") if plain else ".+"
    except ValueError:  # a malformed template fails in _fill with its own message
        return None
    return re.compile(regex)


def _written_by(image: Path, engine: str, pattern: re.Pattern[str] | None) -> bool:
    """True when `image` is an output of this kind of batch: named by its template and
    carrying an artconv recipe of its engine. A file named like an output but without a
    recipe is the user's own, and stays an input (a job that would write over it is
    refused by `check_collisions`)."""
    if pattern is None or not pattern.fullmatch(image.name):
        return False
    from artconv.io.recipe import read_any_recipe

    try:
        recipe = read_any_recipe(image)
    except (ArtconvError, OSError):
        return False
    return recipe.get("engine") == engine


def _fill(template: str, content: str, styles: Sequence[str], index: int, engine: str) -> str:
    style = "+".join(input_stem(s) for s in styles) or "none"
    try:
        return template.format(content=input_stem(content), style=style, index=index,
                               engine=engine)
    except (KeyError, IndexError, ValueError) as exc:
        raise ArtconvError(f"--template {template!r}: unknown field {exc} (use {{content}}, "
                           "{style}, {index}, {engine})") from None


def check_collisions(jobs: Sequence[Job], inputs: Iterable[str | Path] = ()) -> None:
    """Two jobs writing one file, or a job writing (its output or its recipe sidecar) over
    an input of the batch or one of `inputs` (a manifest), is an error before any work
    starts (not a silent overwrite): `outputs.check_write_paths` on the jobs' outputs."""
    check_write_paths((), [*input_files(jobs), *inputs], owned=owned(jobs))


def check_extra_writes(jobs: Sequence[Job], writes: Sequence[tuple[str, str | Path | None]],
                       inputs: Iterable[str | Path] = ()) -> None:
    """Files a batch writes besides its outputs (`--report`, `--sheet`): refused, naming the
    option and the path, when one would overwrite an input of the batch or one of `inputs`,
    a job's output or recipe, or the other, or cannot be written. Call before any work."""
    check_write_paths(writes, [*input_files(jobs), *inputs], owned=owned(jobs))


def owned(jobs: Sequence[Job]) -> list[Owned]:
    """The jobs' outputs as `outputs.check_write_paths` checks them."""
    return [Owned(job.output, describe(job), bool(job.where), job.is_clip,
                  "give each line its own 'output'" if job.where else
                  "give them distinct outputs (--template with {content} and {style})",
                  "give it another 'output'" if job.where else
                  "choose another --out-dir or --template") for job in jobs]


def input_files(jobs: Sequence[Job], options: Iterable[CoreOptions] = ()) -> list[Path]:
    """Every file the jobs read that exists as a path: contents, style images, the files and
    local images of style presets, and every option value naming an existing file (weights,
    backbone, guide, masks, init image, ...) in `options` or in the jobs' overrides. (A
    preset's URL images live in the download cache, not here.)"""
    from artconv.presets import find_preset, resolve_image_ref

    found: list[str | Path] = []
    presets: set[str] = set()
    for job in jobs:
        found.append(job.input)
        for style in job.styles:
            if is_preset_name(style):
                presets.add(style)
            else:
                found.append(style)
    for name in sorted(presets):
        try:
            preset = find_preset(name)
        except ArtconvError:  # an unknown preset fails its jobs when they run
            continue
        found.append(preset.path)
        for ref in preset.images:
            if not ref.startswith(("http://", "https://")):
                found.append(resolve_image_ref(ref, preset.path.parent))
    return files_read(found, [*(job.options for job in jobs), *(o.to_dict() for o in options)])


def describe(job: Job) -> str:
    """The job in a message: its manifest line, else its input (x styles)."""
    if job.where:
        return f"the job of {job.where}"
    styles = "+".join(Path(s).stem for s in job.styles)
    return f"job {Path(job.input).name} x {styles}" if styles else \
        f"job {Path(job.input).name}"


def _styles_engine() -> str | None:
    """The engine a manifest job with styles and no engine is for."""
    return next((n for n, spec in registry.ENGINES.items() if spec.takes_styles), None)
