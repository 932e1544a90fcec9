"""Jobs from what a page sent (or what a killed server's queue file kept): inputs found in
the studio folder, options checked against the engine's record and the server's network,
all before anything is queued."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.batch.jobs import Job
from artconv.batch.runner import reason
from artconv.errors import ArtconvError
from artconv.options import CoreOptions
from artconv.presets import is_preset_name, options_for
from artconv.web.folder import StudioFolder
from artconv.web.forms import (
    TRAIN,
    browser_options,
    check_id,
    check_network,
    is_id,
    job_label,
    new_id,
    page_preset,
    sweep_values,
)
from artconv.web.jobs import FINISHED, Sweep, WebJob
from artconv.web.training import plan_training


class Planner:
    """Checked jobs on `files` (the uploads they name, the results they write) with
    `defaults` (each engine's options: the operator's) under what a page asks for."""

    def __init__(self, files: StudioFolder, defaults: Mapping[str, CoreOptions]) -> None:
        self.files = files
        self.defaults = defaults

    def job(self, form: Mapping[str, Any], *, sweep: str | None = None, label: str = "",
            jid: str | None = None) -> WebJob:
        """A checked job from what a page sent: engine, content (an upload id), styles
        (upload ids or style preset names), preset (options) and option overrides. `jid`:
        the id of a job planned before (a queue resumed), else a new one. A form of
        engine "train" is a training job (`artconv.web.training.plan_training`)."""
        if form.get("engine") == TRAIN:
            if sweep is not None:
                raise ArtconvError("sweep: not of training jobs")
            return plan_training(self.files, self.defaults[TRAIN], form, jid=jid,
                                 label=label)
        engine = registry.get(str(form.get("engine", "style"))).name
        spec = registry.get(engine)
        content = self.files.upload_path(str(form.get("content", "")))
        styles: list[str] = []
        named: list[str] = []
        for item in form.get("styles") or ():
            item = str(item)
            if is_id(item):
                styles.append(str(self.files.upload_path(item)))
                continue
            preset = page_preset(item, engine, style=True)
            styles.append(preset.name)
            named.append(preset.name)
        if spec.takes_styles and not styles:
            raise ArtconvError(f"{engine}: pick at least one style image or style preset")
        if not spec.takes_styles and styles:
            raise ArtconvError(f"{engine}: takes no style images")
        preset = form.get("preset") or None
        base = self.defaults[engine]
        if preset is not None:
            base = options_for(engine, page_preset(str(preset), engine), base=base)
        overrides = browser_options(engine, form.get("options"))
        # Fail now, not when the job runs.
        merged = options_for(engine, overrides=overrides, named=named, base=base)
        check_network(merged, self.defaults[engine], [*named, *([preset] if preset else [])])
        jid = jid or new_id()
        output = self.files.result_path(jid)
        job = Job(engine, str(content), str(output), tuple(styles), overrides, id=jid)
        clean = {"engine": engine, "content": content.stem, "preset": preset,
                 "styles": [Path(s).stem if not is_preset_name(s) else s for s in styles],
                 "options": overrides}
        return WebJob(jid, job, base, clean, label or job_label(engine, named, overrides),
                      sweep=sweep)

    def sweep(self, form: Mapping[str, Any], option: str,
              values: Sequence[Any]) -> tuple[Sweep, list[WebJob]]:
        """One job per value of `option` (3 to 8 values), the rest as in `form`."""
        values = sweep_values(option, values)
        sid = new_id()
        jobs = []
        for value in values:
            options = {**dict(form.get("options") or {}), option: value}
            jobs.append(self.job({**form, "options": options}, sweep=sid,
                                 label=f"{option} = {value}"))
        return Sweep(sid, option, list(values), [j.id for j in jobs],
                     Path(jobs[0].job.input)), jobs

    def restore(self, records: Sequence[Any],
                sweeps: Sequence[Any]) -> tuple[list[WebJob], list[Sweep]]:
        """The jobs and sweeps of a queue file (`WebJob.queue_record`), planned again under
        their ids; a job that no longer plans (its upload deleted) comes back failed,
        saying why, and a damaged sweep record loses its sheet only."""
        jobs: dict[str, WebJob] = {}
        for record in records:
            try:
                job = self.job(record["form"], sweep=record.get("sweep"),
                               label=str(record.get("label", "")),
                               jid=check_id(record["id"], "job"))
            except (ArtconvError, KeyError, TypeError, AttributeError) as exc:
                job = self._failed(record, exc)
            else:
                job.created = record.get("created") or job.created
                if record.get("status") in FINISHED:
                    job.status, job.finished = record["status"], record.get("finished")
            jobs[job.id] = job
        out = []
        for record in sweeps:
            try:
                ids = [j for j in record["jobs"] if j in jobs]
                sweep = Sweep(check_id(record["id"], "sweep"), str(record["option"]),
                              list(record["values"]), ids, Path(jobs[ids[0]].job.input))
            except (ArtconvError, KeyError, TypeError, IndexError):
                continue
            sweep.drawn = sum(jobs[j].status in FINISHED for j in ids)
            out.append(sweep)
        return list(jobs.values()), out

    def _failed(self, record: Any, exc: BaseException) -> WebJob:
        record = record if isinstance(record, Mapping) else {}
        jid = record.get("id") if is_id(record.get("id")) else new_id()
        form = record.get("form") if isinstance(record.get("form"), Mapping) else {}
        engine = str(form.get("engine", "style"))
        return WebJob(jid, Job(engine, "", str(self.files.result_path(jid)), id=jid),
                      self.defaults.get(engine, self.defaults["style"]), dict(form),
                      str(record.get("label", "")) or engine, sweep=record.get("sweep"),
                      status="failed", error=reason(exc), finished=time.time())
