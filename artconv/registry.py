"""Engine name -> (options record, engine class, writer): the one place the CLI, batch,
manifests, presets, Ray and the web page find an engine.

The option records load eagerly (they import no torch, so `--help` stays fast); engine
classes and writers are named as "module:attribute" and imported on first use, here and
nowhere else.

A new engine plugs in with one entry: its option record (a `CoreOptions` subclass), its
engine class (keeping `artconv.engine.Engine`) and a writer
`write(engine, result, output, inputs) -> list[Path]` that saves one result with its recipe.

Two optional fields tell a batch how to feed it:

* `input_size`: the option (field or property) that sets the longest side a batch loads
  inputs at (dream's and features' `size`, style's `output_size`), or None to load them
  at their own size; inputs loaded at one size run together as one `(K, 3, H, W)` call;
* `job_runner_path`: "module:function" for an engine that streams a job's result to disk
  itself (features: arrays larger than memory are memory-mapped into the output file)
  instead of returning it to the writer; it is called as
  `run_job(input, output, options, *, extractor=..., progress=...)`;
* `clip_frames_path`: "module:Class" of the wrapper that runs the engine frame by frame in
  a clip (`artconv.video.loop`), or None for an engine that takes no clips: the CLI, batch
  and the clip driver ask `takes_clips` / `clip_frames`, never an engine's name.

Two more say what an engine needs and where its jobs come from:

* `network`: False for an engine that needs no feature extractor (a trained style network):
  a batch then loads none for it and passes `extractor=None`;
* `via`: (engine, option) - the other engine's command and batch take this engine's jobs
  when that option is given: `artconv style PHOTO --model M` and `artconv batch style
  --model M` run the fast engine (`route`).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from artconv.deepdream.options import DreamOptions
from artconv.errors import ArtconvError
from artconv.fast.options import FastOptions
from artconv.features.options import FeatureOptions
from artconv.options import CoreOptions, flag
from artconv.style.options import StyleOptions


@dataclass(frozen=True)
class EngineSpec:
    name: str
    options: type[CoreOptions]
    engine_path: str  # "module:Class"
    writer_path: str  # "module:function"
    template: str  # default output name in a batch
    takes_styles: bool = False
    summary: str = ""
    input_size: str | None = "size"  # option: longest side a batch loads inputs at
    job_runner_path: str | None = None  # "module:function" for engines that write themselves
    network: bool = True  # needs a FeatureExtractor (a batch loads one for it)
    via: tuple[str, str] | None = None  # (engine, option): that engine's jobs with the option
    clip_frames_path: str | None = None  # "module:Class": the engine frame by frame in a clip

    @property
    def engine(self) -> type:
        return _load(self.engine_path)

    @property
    def writer(self) -> Any:
        return _load(self.writer_path)

    @property
    def job_runner(self) -> Any | None:
        return _load(self.job_runner_path) if self.job_runner_path else None

    @property
    def takes_clips(self) -> bool:
        return self.clip_frames_path is not None

    @property
    def clip_frames(self) -> Any | None:
        return _load(self.clip_frames_path) if self.clip_frames_path else None

    def load_size(self, options: CoreOptions) -> int | None:
        """The longest side inputs of a job with `options` are loaded at (None: as stored)."""
        return getattr(options, self.input_size) if self.input_size else None


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (
    EngineSpec("style", StyleOptions, "artconv.style.engine:StyleTransfer",
               "artconv.io.writers:write_picture", "{content}_{style}.png", takes_styles=True,
               summary="Neural style transfer (Gatys et al.)", input_size="output_size",
               clip_frames_path="artconv.video.loop:StyleFrames"),
    EngineSpec("dream", DreamOptions, "artconv.deepdream.engine:Dreamer",
               "artconv.io.writers:write_picture", "{content}_dream.png",
               summary="Deep Dream", clip_frames_path="artconv.video.loop:DreamFrames"),
    EngineSpec("features", FeatureOptions, "artconv.features.engine:FeatureEngine",
               "artconv.features.files:write_result", "{content}.npy",
               summary="Per-pixel features (hypercolumns)",
               job_runner_path="artconv.features.files:write_features"),
    EngineSpec("fast", FastOptions, "artconv.fast.engine:FastStyle",
               "artconv.io.writers:write_picture", "{content}_fast.png",
               summary="Fast style: a trained style network, one pass per photo (--model)",
               network=False, via=("style", "model")),
)}


def get(name: str) -> EngineSpec:
    """The engine called `name`; an unknown name is an error listing the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ArtconvError(f"unknown engine {name!r} (choose {', '.join(ENGINES)})") from None


def options_class(name: str) -> type[CoreOptions]:
    """The option record of the engine called `name`."""
    return get(name).options


def names() -> tuple[str, ...]:
    return tuple(ENGINES)


def routed(name: str) -> list[EngineSpec]:
    """The engines whose jobs the `name` command also takes (their `via` names it)."""
    return [spec for spec in ENGINES.values() if spec.via and spec.via[0] == name]


def route(name: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(engine, options) for a `name` job given these option values (None: not given):
    `name` itself, or the engine routed from it whose `via` option is given, which must
    then take every other option given (a style's --iterations means nothing to a trained
    network: one line naming both)."""
    for spec in routed(name):
        option = spec.via[1] if spec.via else ""
        if given.get(option) is None:
            continue
        known = {f.name for f in dataclasses.fields(spec.options) if f.metadata.get("cli", True)}
        values = {k: v for k, v in given.items() if v is not None}
        extra = [k for k in values if k not in known]
        if extra:
            raise ArtconvError(f"{flag(extra[0])}: does not apply with {flag(option)} (the "
                               f"{spec.name} engine takes {', '.join(map(flag, sorted(known)))})")
        return spec.name, values
    return name, given
def clip_engines() -> tuple[str, ...]:
    """The engines that take clips."""
    return tuple(name for name, spec in ENGINES.items() if spec.takes_clips)
