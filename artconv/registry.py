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
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from artconv.deepdream.options import DreamOptions
from artconv.errors import ArtconvError
from artconv.features.options import FeatureOptions
from artconv.options import CoreOptions
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


def clip_engines() -> tuple[str, ...]:
    """The engines that take clips."""
    return tuple(name for name, spec in ENGINES.items() if spec.takes_clips)
