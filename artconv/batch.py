"""Batch rendering: many inputs x styles through one network, resumable, nothing lost.

A batch is a list of plain `Job` records (JSON-serialisable: engine, input, styles, output,
option overrides) and a `Runner` that executes them. The local runner loads each network
once, computes each style's targets once, optimises `batch_size` same-sized contents in one
tensor, and isolates failures: a bad input fails its job alone. Nothing is lost (README,
"Nothing lost"): every path is checked before any work, outputs are written atomically with
their recipes, and a re-run sweeps a killed run's temporaries, skips the finished outputs
(those with their recipe) and never takes its own outputs for inputs. A distributed runner
(artconv.batch_ray) plugs into the same interface.

    jobs = artconv.batch.plan("style", "photos/*.jpg", styles=["starry.jpg"], out_dir="out")
    report = artconv.batch.render(jobs, options={"style": StyleOptions(iterations=(300,))})
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import string
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from artconv.core import FeatureExtractor
from artconv.errors import ArtconvError
from artconv.imageio import atomic_write_bytes, image_hw, list_images, load_image, save_image
from artconv.options import CoreOptions, Options, opt
from artconv.outputs import (
    check_writable,
    check_write_paths,
    file_key,
    output_complete,
    sidecar,
    sweep_temporaries,
)
from artconv.presets import is_preset_name, options_class
from artconv.progress import Progress, ensure
from artconv.recipe import make_recipe, read_any_recipe

ENGINES = ("style", "dream", "features")
DEFAULT_TEMPLATES = {"style": "{content}_{style}.png", "dream": "{content}_dream.png",
                     "features": "{content}.npy"}
_JOB_KEYS = {"engine", "input", "styles", "output", "options", "id"}


@dataclass
class BatchOptions(Options):
    """How a batch runs (the engines' own options are separate)."""

    out_dir: str | None = opt(None, "Folder for the outputs (default: next to each input).")
    template: str | None = opt(
        None, "Output file name from {content}, {style}, {index}, {engine} (default "
        "{content}_{style}.png for style, {content}_dream.png, {content}.npy).")
    batch_size: int = opt(1, "Optimise this many same-sized contents with the same style in "
                          "one tensor (style engine).", min=1, max=256)
    overwrite: bool = opt(False, "Redo jobs whose output exists (default: skip them).")
    report: str | None = opt(None, "Write the summary (every job, status, reason, time) as "
                             "JSON to this file.")
    sheet: str | None = opt(None, "Write a contact sheet: inputs (rows) x styles (columns).")
    engine: Literal["local", "ray"] = opt("local", "Where jobs run: this process, or a Ray "
                                          "cluster (pip install 'artconv[ray]').")
    address: str = opt("auto", "Ray cluster address: auto (a running local cluster, else a "
                       "new one) or HOST:PORT.")
    gpus_per_job: float = opt(0.0, "GPUs a Ray task reserves (1 = one GPU per worker).",
                              min=0.0)
    cpus_per_job: float = opt(1.0, "CPUs a Ray task reserves.", min=0.0)
    max_retries: int = opt(2, "Ray: times a job whose worker died is retried elsewhere.",
                           min=0, max=100)


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

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "engine": self.engine, "input": self.input,
                "styles": list(self.styles), "output": self.output,
                "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "job",
                  base: Path | None = None, engine: str | None = None) -> Job:
        """A job from a manifest line; relative paths resolve against `base`."""
        bad = sorted(set(data) - _JOB_KEYS)
        if bad:
            raise ArtconvError(f"{source}: unknown key {bad[0]!r} (allowed: "
                               f"{', '.join(sorted(_JOB_KEYS))})")
        engine = data.get("engine", engine or ("style" if data.get("styles") else None))
        if engine not in ENGINES:
            raise ArtconvError(f"{source}: 'engine' must be one of {', '.join(ENGINES)}, "
                               f"got {engine!r}")
        if "input" not in data:
            raise ArtconvError(f"{source}: missing 'input'")
        styles = data.get("styles", ())
        styles = (styles,) if isinstance(styles, str) else styles
        if not isinstance(styles, list | tuple) or not all(isinstance(s, str) for s in styles):
            raise ArtconvError(f"{source}: 'styles' must be a path/preset or a list of them")
        styles = tuple(styles)
        if engine == "style" and not styles:
            raise ArtconvError(f"{source}: a style job needs 'styles'")
        options = data.get("options", {})
        if not isinstance(options, Mapping):
            raise ArtconvError(f"{source}: 'options' must be a table/object")
        try:  # bad option names and values fail now, naming the line
            options_class(engine).from_dict(options, source=source)
        except ArtconvError as exc:
            raise option_error(source, exc) from None

        def resolve(p: str) -> str:
            path = Path(p).expanduser()
            return str(path if path.is_absolute() or base is None else base / path)

        content = resolve(str(data["input"]))
        output = data.get("output") or str(Path(content).parent / _fill(
            DEFAULT_TEMPLATES[engine], content, styles, 0, engine))
        return cls(engine, content, resolve(str(output)),
                   tuple(s if is_preset_name(s) else resolve(s) for s in styles),
                   # from_dict takes "avg-rescale" too; replace() (at run time) does not
                   {str(k).replace("-", "_"): v for k, v in options.items()},
                   str(data.get("id", "")), where=source)


def option_error(source: str, exc: ArtconvError) -> ArtconvError:
    """`exc` (an options error, worded for the command line: "--size 0: ...") reworded for
    the manifest line `source` that gave the value: "jobs.jsonl:3: option 'size': 0: ..."."""
    text = str(exc)
    if text.startswith(source):
        return exc
    m = re.match(r"--([a-z0-9][a-z0-9-]*):? (.*)", text, re.S)
    if m:
        return ArtconvError(f"{source}: option '{m[1].replace('-', '_')}': {m[2]}")
    return ArtconvError(f"{source}: {text}")


@dataclass
class JobResult:
    job: Job
    status: str  # "done", "skipped", "failed" or "interrupted"
    reason: str = ""
    seconds: float = 0.0

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


# -- planning --------------------------------------------------------------------------------
def plan(engine: str, inputs: str | Path | Sequence[str | Path], *,
         styles: Sequence[str | Path] = (), out_dir: str | Path | None = None,
         template: str | None = None, blend: bool = False,
         options: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs for every input (x every style for `style`; with `blend` every input gets one job
    with all the styles together). Output names come from `template`, with `{content}`,
    `{style}`, `{index}` and `{engine}`; the default folder is each input's own."""
    if engine not in ENGINES:
        raise ArtconvError(f"unknown engine {engine!r} (choose {', '.join(ENGINES)})")
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    template = template or DEFAULT_TEMPLATES[engine]
    if engine == "style":
        if not styles:
            raise ArtconvError("batch style: give at least one style (--styles)")
        groups = [tuple(map(str, styles))] if blend else [(str(s),) for s in styles]
    else:
        groups = [()]
    images = _batch_inputs(items, engine, template, groups)
    jobs = []
    for image in images:
        for group in groups:
            name = _fill(template, str(image), group, len(jobs), engine)
            folder = Path(out_dir) if out_dir is not None else image.parent
            jobs.append(Job(engine, str(image), str(folder / name), group,
                            dict(options or {}), id=str(len(jobs))))
    check_collisions(jobs)
    return jobs


def _batch_inputs(items: Sequence[str | Path], engine: str, template: str,
                  groups: Sequence[tuple[str, ...]]) -> list[Path]:
    """The images of `items`, less those found in folders and patterns that an earlier run
    of this batch wrote (beside its inputs, by default), so a re-run skips them instead of
    taking them as new inputs. An image named on its own is always an input."""
    pattern = _template_pattern(template, engine, groups)
    found: set[Path] = set()
    dropped: list[Path] = []
    for item in items:
        if Path(item).is_file():
            found.add(Path(item))
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


def _template_pattern(template: str, engine: str,
                      groups: Sequence[tuple[str, ...]]) -> re.Pattern[str] | None:
    """A regex of the file names `template` makes for any content (last path part only)."""
    styles = "|".join(re.escape("+".join(Path(s).stem for s in g) or "none") for g in groups)
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
    try:
        recipe = read_any_recipe(image)
    except (ArtconvError, OSError):
        return False
    return recipe.get("engine") == engine


def _fill(template: str, content: str, styles: Sequence[str], index: int, engine: str) -> str:
    style = "+".join(Path(s).stem for s in styles) or "none"
    try:
        return template.format(content=Path(content).stem, style=style, index=index,
                               engine=engine)
    except (KeyError, IndexError, ValueError) as exc:
        raise ArtconvError(f"--template {template!r}: unknown field {exc} (use {{content}}, "
                           "{style}, {index}, {engine})") from None


def check_collisions(jobs: Sequence[Job], inputs: Iterable[str | Path] = ()) -> None:
    """Two jobs writing one file, or a job writing (its output or its recipe sidecar) over
    an input of the batch or one of `inputs` (a manifest), is an error before any work
    starts (not a silent overwrite)."""
    sources: dict[Any, str] = {}
    for path in [*input_files(jobs), *inputs]:
        sources.setdefault(file_key(path), str(path))
    seen: dict[Any, Job] = {}
    for job in jobs:
        key = file_key(job.output)
        if key in seen:
            hint = ("give each line its own 'output'" if job.where else
                    "give them distinct outputs (--template with {content} and {style})")
            raise ArtconvError(f"{job.output}: jobs collide ({_describe(seen[key])} and "
                               f"{_describe(job)} would both write it); {hint}")
        for what, path in (("output", job.output), ("recipe", sidecar(job.output))):
            src = sources.get(file_key(path))
            if src is not None:
                hint = ("give it another 'output'" if job.where else
                        "choose another --out-dir or --template")
                raise ArtconvError(f"{path}: {_describe(job)} would write its {what} over "
                                   f"the input {src}; {hint}")
        seen[key] = job


def check_extra_writes(jobs: Sequence[Job], writes: Sequence[tuple[str, str | Path | None]],
                       inputs: Iterable[str | Path] = ()) -> None:
    """Files a batch writes besides its outputs (`--report`, `--sheet`): refused, naming the
    option and the path, when one would overwrite an input of the batch or one of `inputs`,
    a job's output or recipe, or the other, or cannot be written. Call before any work."""
    check_write_paths(writes, [*input_files(jobs), *inputs])
    owners: dict[Any, tuple[str, Job]] = {}
    for job in jobs:
        owners.setdefault(file_key(job.output), ("output", job))
        owners.setdefault(file_key(sidecar(job.output)), ("recipe", job))
    for label, path in writes:
        if path is None:
            continue
        hit = owners.get(file_key(path))
        if hit is not None:
            raise ArtconvError(f"{label} {path}: is the {hit[0]} of {_describe(hit[1])}; "
                               "refusing to overwrite it (choose another path)")


def input_files(jobs: Sequence[Job], options: Iterable[CoreOptions] = ()) -> list[Path]:
    """Every file the jobs read that exists as a path: contents, style images, the files and
    local images of style presets, and weights and backbone files named in `options` or in
    the jobs' overrides. (A preset's URL images live in the download cache, not here.)"""
    from artconv.presets import find_preset, resolve_image_ref

    found: dict[str, None] = {}
    presets: set[str] = set()
    for job in jobs:
        found[job.input] = None
        for style in job.styles:
            if is_preset_name(style):
                presets.add(style)
            else:
                found[style] = None
        for name in ("weights", "backbone"):
            value = job.options.get(name)
            if isinstance(value, str):
                found.update(dict.fromkeys(_option_file(name, value)))
    for opts in options:
        found.update(dict.fromkeys(_option_file("weights", opts.weights)))
        found.update(dict.fromkeys(_option_file("backbone", opts.backbone)))
    for name in sorted(presets):
        try:
            preset = find_preset(name)
        except ArtconvError:  # an unknown preset fails its jobs when they run
            continue
        found[str(preset.path)] = None
        for ref in preset.images:
            if not ref.startswith(("http://", "https://")):
                found[str(resolve_image_ref(ref, preset.path.parent))] = None
    return [Path(p) for p in found]


def _option_file(name: str, value: str | None) -> list[str]:
    if not value:
        return []
    path = value.rpartition(":")[0] if name == "backbone" and ":" in value else value
    return [path] if os.path.isfile(path) else []


def read_manifest(path: str | Path) -> list[Job]:
    """Jobs from a TOML manifest (`engine = ...`, `[[job]]` tables) or JSON Lines (one job
    object a line, `#` comments allowed); relative paths resolve against its folder."""
    path = Path(path)
    text = _manifest_text(path)
    base = path.resolve().parent
    jobs: list[Job] = []
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ArtconvError(f"{path}: malformed TOML ({exc})") from None
        bad = sorted(set(data) - {"engine", "job"})
        if bad:
            raise ArtconvError(f"{path}: unknown key {bad[0]!r} (allowed: engine, [[job]])")
        entries = data.get("job", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ArtconvError(f"{path}: 'job' must be [[job]] tables")
        for i, entry in enumerate(entries):
            jobs.append(_with_id(Job.from_dict(entry, source=f"{path}: job {i + 1}",
                                               base=base, engine=data.get("engine")), i))
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArtconvError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(entry, dict):
                raise ArtconvError(f"{path}:{lineno}: expected a JSON object")
            jobs.append(_with_id(Job.from_dict(entry, source=f"{path}:{lineno}", base=base),
                                 len(jobs)))
    if not jobs:
        raise ArtconvError(f"{path}: the manifest lists no jobs")
    check_collisions(jobs, inputs=[path])
    return jobs


def _manifest_text(path: Path) -> str:
    """The manifest's text, or one line saying why it is no manifest (an image given by
    mistake, a file saved in another encoding)."""
    try:
        with path.open("rb") as f:
            head = f.read(8192)
            if b"\0" in head:  # text never holds NUL; images and archives do, early
                raise ArtconvError(f"{path}: not a text file (a manifest is JSON Lines or "
                                   "TOML)")
            data = head + f.read()
    except OSError as exc:
        raise ArtconvError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")  # a BOM from Windows editors is no error
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ArtconvError(f"{path}:{line}: not UTF-8 at byte {exc.start} "
                           f"(0x{data[exc.start]:02x}); save the manifest as UTF-8 text"
                           ) from None


def _with_id(job: Job, index: int) -> Job:
    return job if job.id else dataclasses.replace(job, id=str(index))


# -- running ---------------------------------------------------------------------------------
class Runner(Protocol):
    """Executes jobs; the local and the Ray runner share this interface."""

    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *,
            batch_size: int, progress: Progress,
            on_result: Callable[[JobResult], Any]) -> list[JobResult]:
        """Run every job (none is skipped here) and call `on_result` as each ends.

        A runner may also keep `running`, the jobs started and not yet reported, so that a
        Ctrl-C report can tell the jobs it cut short from those that never started."""


def render(jobs: Sequence[Job], options: Mapping[str, CoreOptions | Mapping[str, Any]]
           | None = None, *, runner: Runner | None = None, overwrite: bool = False,
           batch_size: int = 1, progress: Progress | None = None, quiet: bool = True,
           ) -> BatchReport:
    """Run `jobs` and return a report; existing outputs are skipped unless `overwrite`.

    `options` maps an engine name to its options (an options object or a dict of fields),
    the base every job's own overrides apply to.
    """
    if batch_size < 1:
        raise ArtconvError(f"--batch-size {batch_size}: must be at least 1")
    check_collisions(jobs)
    base = resolve_options(options or {}, {j.engine for j in jobs})
    start = time.perf_counter()
    # A killed run (SIGKILL, power loss) leaves hidden temporaries beside its outputs that
    # nothing else would ever remove; this batch is about to write those outputs again.
    swept = sweep_temporaries(j.output for j in jobs)
    results: dict[int, JobResult] = {}
    todo = []
    for i, job in enumerate(jobs):
        # An output without its recipe (killed between the two writes) is unfinished.
        if not overwrite and output_complete(job.output):
            results[i] = JobResult(job, "skipped", "output exists")
        else:
            todo.append(job)
    for job in todo:  # an unwritable folder fails the batch now, not every job at its end
        check_writable(job.output, "output")
    progress = ensure(progress, quiet)
    runner = runner or LocalRunner()
    order = {id(j): i for i, j in enumerate(jobs)}
    failed = 0
    interrupted = False

    def on_result(result: JobResult) -> None:
        nonlocal failed
        results[order[id(result.job)]] = result
        failed += result.status == "failed"
        overall.update(1, failed=failed)

    with progress:
        overall = progress.task("batch", len(jobs))
        overall.update(len(results))
        try:
            runner.run(todo, base, batch_size=batch_size, progress=progress,
                       on_result=on_result)
        except KeyboardInterrupt:  # report what was done; the re-run finishes the rest
            interrupted = True
            running = {id(j) for j in getattr(runner, "running", ())}
            for i, job in enumerate(jobs):
                results.setdefault(i, JobResult(
                    job, "interrupted", "interrupted while running" if id(job) in running
                    else "Ctrl-C before it ran"))
    stats = dict(getattr(runner, "stats", {}))
    if swept:
        stats["temp_files_swept"] = stats.get("temp_files_swept", 0) + len(swept)
    return BatchReport([results[i] for i in sorted(results)], time.perf_counter() - start,
                       stats, interrupted)


def resolve_options(options: Mapping[str, CoreOptions | Mapping[str, Any]],
                    engines: Iterable[str]) -> dict[str, CoreOptions]:
    out = {}
    for engine in engines:
        given = options.get(engine)
        cls = options_class(engine)
        if given is None:
            out[engine] = cls()
        elif isinstance(given, CoreOptions):
            out[engine] = given
        else:
            out[engine] = cls.from_dict(dict(given))
    return out


def recorder(results: list[JobResult], on_result: Callable[[JobResult], Any],
             progress: Progress) -> Callable[[JobResult], None]:
    """What every runner does as a job ends: keep it, report it, log a failure."""

    def record(result: JobResult) -> None:
        results.append(result)
        on_result(result)
        if result.status == "failed":
            progress.log(f"[red]failed[/] {result.job.output}: {result.reason}")

    return record


class LocalRunner:
    """Runs jobs in this process: one network per distinct network options, one set of style
    targets per (style, scale), `batch_size` same-sized style jobs optimised together."""

    def __init__(self) -> None:
        self._networks: dict[tuple, FeatureExtractor] = {}
        self._engines: dict[str, Any] = {}
        self._targets: dict[tuple, Any] = {}
        self.stats: dict[str, int] = defaultdict(int)
        self.running: list[Job] = []

    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *, batch_size: int,
            progress: Progress, on_result: Callable[[JobResult], Any] = lambda r: None,
            ) -> list[JobResult]:
        results: list[JobResult] = []
        report = recorder(results, on_result, progress)

        def record(result: JobResult) -> None:
            self.running = [j for j in self.running if j is not result.job]
            report(result)

        self.running = []
        groups: dict[tuple, list[tuple[Job, CoreOptions]]] = defaultdict(list)
        for job in jobs:
            try:
                opts = options[job.engine]
                if job.engine == "style":  # named style presets bring their options
                    opts = opts.replace(**_style_sources(job.styles).preset_options)
                opts = opts.replace(**job.options)
            except ArtconvError as exc:
                record(JobResult(job, "failed", str(option_error(job.where, exc)
                                                     if job.where else exc)))
                continue
            key = (job.engine, _options_key(opts), job.styles if job.engine == "style" else ())
            groups[key].append((job, opts))
        for (engine, _, _), members in groups.items():
            if engine == "style":
                self._run_style(members, batch_size, progress, record)
            else:
                for job, opts in members:
                    self.running = [job]
                    record(self._guarded(job, lambda j=job, o=opts: self._run_one(j, o,
                                                                                   progress)))
        return results

    # -- engines -----------------------------------------------------------------------------
    def network(self, opts: CoreOptions) -> FeatureExtractor:
        key = network_key(opts)
        if key not in self._networks:
            self.stats["networks_loaded"] += 1
            self._networks[key] = FeatureExtractor.from_options(opts)
        return self._networks[key]

    def engine(self, engine: str, opts: CoreOptions, progress: Progress) -> Any:
        key = f"{engine}:{_options_key(opts)}"
        if key not in self._engines:
            if engine == "style":
                from artconv.style import StyleTransfer

                self._engines[key] = StyleTransfer(opts, extractor=self.network(opts),
                                                   progress=progress)
            elif engine == "dream":
                from artconv.deepdream import Dreamer

                self._engines[key] = Dreamer(opts, extractor=self.network(opts),
                                             progress=progress)
        return self._engines[key]

    def _run_one(self, job: Job, opts: CoreOptions, progress: Progress) -> JobResult:
        if job.engine == "dream":
            dreamer = self.engine("dream", opts, progress)
            image = load_image(job.input, opts.size)
            result = dreamer.run(image)
            save_image(result, job.output, inputs=[job.input], recipe=make_recipe(
                "dream", dreamer.options, weights=dreamer.fx.identity, inputs=[job.input],
                device=dreamer.device, precision=dreamer.precision))
        else:
            from artconv.featurefiles import write_features

            write_features(job.input, job.output, opts, extractor=self.network(opts),
                           progress=progress)
        return JobResult(job, "done")

    def _run_style(self, members: list[tuple[Job, CoreOptions]], batch_size: int,
                   progress: Progress, record: Callable[[JobResult], Any]) -> None:
        job0, opts = members[0]
        try:
            st = self.engine("style", opts, progress)
            styles = _style_images(job0.styles)
        except Exception as exc:  # noqa: BLE001 - a bad style fails its jobs, not the batch
            for job, _ in members:
                record(JobResult(job, "failed", _reason(exc)))
            return
        # Grouped by header size, pixels loaded chunk by chunk: a batch of thousands of
        # photos must not hold them all decoded at once.
        by_size: dict[tuple[int, int], list[Job]] = defaultdict(list)
        for job, _ in members:
            try:
                by_size[st.scale_sizes(image_hw(job.input))[-1]].append(job)
            except ArtconvError as exc:
                record(JobResult(job, "failed", str(exc)))
        for same in by_size.values():
            for i in range(0, len(same), batch_size):
                chunk = []
                self.running = list(same[i:i + batch_size])
                for job in same[i:i + batch_size]:
                    try:
                        chunk.append((job, load_image(job.input)))
                    except ArtconvError as exc:
                        record(JobResult(job, "failed", str(exc)))
                if not chunk:
                    continue
                start = time.perf_counter()
                try:
                    self._style_chunk(st, chunk, styles, opts, job0.styles)
                except Exception as exc:  # noqa: BLE001 - one bad chunk must not stop the batch
                    for job, _ in chunk:
                        record(JobResult(job, "failed", _reason(exc),
                                         time.perf_counter() - start))
                    continue
                seconds = (time.perf_counter() - start) / len(chunk)
                for job, _ in chunk:
                    record(JobResult(job, "done", seconds=seconds))

    def _style_chunk(self, st: Any, chunk: list[tuple[Job, torch.Tensor]],
                     styles: list[torch.Tensor], opts: CoreOptions,
                     style_names: tuple[str, ...]) -> None:
        sizes = st.scale_sizes(tuple(chunk[0][1].shape[-2:]))
        contents = torch.stack([_resize(c, sizes[-1]) for _, c in chunk])
        if st.needs_content_for_targets:  # colour preservation: targets depend on content
            targets = None
        else:
            targets = {}
            for longest in st.options.ladder():
                key = (_options_key(opts), style_names, longest)
                if key not in self._targets:
                    self.stats["style_targets_computed"] += 1
                    self._targets[key] = st.style_targets(styles, longest)
                targets[longest] = self._targets[key]
        result = st.run(contents, styles if targets is None else None, targets=targets)
        for (job, _), image in zip(chunk, result, strict=True):
            save_image(image, job.output, inputs=[job.input, *style_names],
                       recipe=make_recipe("style", st.options, weights=st.fx.identity,
                                          inputs=[job.input, *style_names], device=st.device,
                                          precision=st.precision))

    @staticmethod
    def _guarded(job: Job, fn: Callable[[], JobResult]) -> JobResult:
        start = time.perf_counter()
        try:
            result = fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the batch
            return JobResult(job, "failed", _reason(exc), time.perf_counter() - start)
        result.seconds = time.perf_counter() - start
        return result


def sheet_for(report: BatchReport, path: str | Path, thumb: int = 192) -> Path:
    """A contact sheet of a style or dream batch: contents down, styles across (one column
    for dream), results inside."""
    from artconv.sheet import contact_sheet

    jobs = [r.job for r in report.results]
    check_sheet(jobs, path)
    rows = list(dict.fromkeys(j.input for j in jobs))
    columns: list[str | None] = list(dict.fromkeys(s for j in jobs for s in j.styles[:1]))
    columns = columns or [None]
    status = {id(r.job): r.status for r in report.results}
    cells = {(rows.index(j.input), columns.index(j.styles[0]) if j.styles else 0):
             j.output if status[id(j)] != "failed" else None for j in jobs}
    return contact_sheet(rows, columns, cells, path, thumb=thumb)


def check_sheet(jobs: Sequence[Job], path: str | Path) -> None:
    """Refuse a contact sheet that cannot be drawn, before the batch runs rather than after."""
    from artconv.imageio import SAVE_FORMATS

    if Path(path).suffix.lower() not in SAVE_FORMATS:
        raise ArtconvError(f"--sheet {path}: must be an image file "
                           f"({', '.join(SAVE_FORMATS)})")
    if any(j.engine == "features" for j in jobs):
        raise ArtconvError(f"--sheet {path}: features outputs are arrays, not pictures")
    check_extra_writes(jobs, [("--sheet", path)])


def _style_sources(styles: Sequence[str]) -> Any:
    from artconv.style import resolve_styles

    return resolve_styles(list(styles))


def _style_images(styles: Sequence[str]) -> list[torch.Tensor]:
    return [load_image(s) for s in _style_sources(styles).images]


def _resize(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    from artconv.imageio import resize_to

    return image if tuple(image.shape[-2:]) == tuple(hw) else resize_to(image, hw)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ArtconvError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def network_key(opts: CoreOptions) -> tuple:
    """Options that change the network itself: jobs sharing them share one extractor."""
    seed = opts.seed if opts.weights == "random" and not opts.backbone else None
    return (opts.arch, opts.weights, opts.preprocess, opts.pooling, opts.avg_rescale,
            opts.backbone, seed)


def _options_key(opts: CoreOptions) -> str:
    return json.dumps(opts.to_dict(), sort_keys=True, default=str)


def _describe(job: Job) -> str:
    """The job in a message: its manifest line, else its input (x styles)."""
    if job.where:
        return f"the job of {job.where}"
    styles = "+".join(Path(s).stem for s in job.styles)
    return f"job {Path(job.input).name} x {styles}" if styles else \
        f"job {Path(job.input).name}"
