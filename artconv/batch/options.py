"""How a batch runs (its own record; the engines' options are separate). No torch here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from artconv.options import Options, opt


@dataclass
class RayOptions(Options):
    """How jobs run on a Ray cluster: declared once for `artconv batch ENGINE`, `artconv
    batch run` and `artconv serve`, so their flags, defaults and limits agree."""

    address: str = opt("auto", "Ray cluster address: auto (a running local cluster, else a "
                       "new one) or HOST:PORT.")
    gpus_per_job: float = opt(0.0, "GPUs a Ray worker reserves (1 = one GPU per worker).",
                              min=0.0)
    cpus_per_job: float = opt(1.0, "CPUs a Ray worker reserves.", min=0.0)
    max_retries: int = opt(2, "Ray: times a job whose worker died is retried elsewhere.",
                           min=0, max=100)


@dataclass
class _BatchFields(Options):
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


# The batch's own fields first, then the Ray ones (the order of the flags in --help).
@dataclass
class BatchOptions(RayOptions, _BatchFields):
    """How a batch runs (the engines' own options are separate)."""

    @property
    def ray(self) -> RayOptions:
        return RayOptions(**{f.name: getattr(self, f.name) for f in fields(RayOptions)})
