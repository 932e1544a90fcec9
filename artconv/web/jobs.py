"""The studio's jobs and sweeps as the page sees them: a batch `Job` with its status, steps,
loss curve and latest preview; a sweep's jobs and how much of its contact sheet is drawn."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artconv.batch.jobs import Job
from artconv.options import CoreOptions
from artconv.web.previews import Previews

FINISHED = ("done", "stopped", "failed", "cancelled")
KEPT = ("done", "stopped")  # the statuses whose result is written (and in the gallery)
MAX_CURVE_POINTS = 400


@dataclass
class WebJob:
    """A batch job and what the page watches of it. `version`: the studio's change count
    when it last changed (the event stream sends what changed since it last looked)."""

    id: str
    job: Job
    base: CoreOptions  # studio defaults under the page's preset; job.options go on top
    form: dict[str, Any]  # what the page sent: "run again" sends it back
    label: str
    sweep: str | None = None
    status: str = "queued"
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)
    curve_name: str = ""
    preview: bytes | None = None
    preview_version: int = 0
    previews: Previews = field(default_factory=Previews)
    stop: threading.Event = field(default_factory=threading.Event)
    version: int = 0
    photos: tuple[str, ...] = ()  # a training job's photos (artconv.web.training)

    @property
    def output(self) -> Path:
        return Path(self.job.output)

    def take_step(self, step: Any) -> None:
        """A step's progress and loss (the curve halved when it grows too long)."""
        self.step = {"stage": step.stage, "stages": step.stages, "step": step.step,
                     "steps": step.steps, "done": step.done, "total": step.total,
                     "label": step.label}
        name = next((k for k in ("loss", "objective") if k in step.figures), "")
        if name:
            self.curve_name = name
            self.curve.append((step.done, float(step.figures[name])))
            if len(self.curve) > MAX_CURVE_POINTS:
                self.curve = self.curve[::2]

    def summary(self) -> dict[str, Any]:
        """Its line in the queue."""
        return {"id": self.id, "label": self.label, "status": self.status,
                "sweep": self.sweep}

    def state(self) -> dict[str, Any]:
        """What the page shows: status, step, ETA, loss curve, preview version."""
        eta = None
        done, total = self.step.get("done", 0), self.step.get("total", 0)
        if self.status == "running" and self.started and done:
            eta = (time.time() - self.started) / done * max(total - done, 0)
        return {**self.summary(), "engine": self.job.engine, "error": self.error,
                "step": dict(self.step), "eta": None if eta is None else round(eta, 1),
                "curve": {"name": self.curve_name, "points": list(self.curve)},
                "preview": self.preview_version, "form": self.form,
                "result": self.output.name if self.status in KEPT else None}

    def queue_record(self) -> dict[str, Any]:
        """Its entry in the queue file: what plans it again (`Planner.restore`). A job
        that was running is queued again."""
        return {"id": self.id, "form": self.form, "label": self.label, "sweep": self.sweep,
                "status": "queued" if self.status == "running" else self.status,
                "created": self.created, "finished": self.finished}

    def record(self, status: str) -> dict[str, Any]:
        """The gallery entry kept beside the result, as it ends with `status`."""
        return {"id": self.id, "engine": self.job.engine, "label": self.label,
                "status": status, "form": self.form, "sweep": self.sweep,
                "output": self.output.name, "created": self.created,
                "finished": self.finished,
                "seconds": round((self.finished or 0) - (self.started or 0), 2)}


@dataclass
class Sweep:
    id: str
    option: str
    values: list[Any]
    jobs: list[str]
    content: Path
    drawn: int = 0  # jobs whose end the sheet shows (its version, for the page)
    version: int = 0

    @property
    def finished(self) -> bool:
        """The sheet shows every job (not only: every job ended)."""
        return self.drawn == len(self.jobs)

    def queue_record(self) -> dict[str, Any]:
        return {"id": self.id, "option": self.option, "values": self.values,
                "jobs": self.jobs}
