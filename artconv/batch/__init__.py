"""Batch rendering: job records, manifests, the local and the Ray runner.

    jobs = artconv.batch.plan("style", "photos/*.jpg", styles=["starry.jpg"], out_dir="out")
    report = artconv.batch.render(jobs, options={"style": StyleOptions(iterations=(300,))})

Modules: `jobs` (records, planning, checks before any work), `manifests` (jobs from a
file), `runner` (`render`, the `Runner` protocol, contact sheets), `local` (the local
runner, the only one that loads torch) and `ray` (a Ray cluster).

The option record loads with the package (it needs no torch, so `--help` stays fast); every
other name loads from its module on first use, so `from artconv.batch import X` keeps working
for every public name, and planning a batch never loads torch.
"""

from __future__ import annotations

from artconv._moved import forward
from artconv.batch.options import BatchOptions

__all__ = [
    "BatchOptions", "BatchReport", "DEFAULT_TEMPLATES", "ENGINES", "Job", "JobResult",
    "LocalRunner", "Runner", "check_collisions", "check_extra_writes", "check_sheet",
    "input_files", "option_error", "plan", "read_manifest", "recorder", "render",
    "resolve_options", "sheet_for",
]

# Looked up in this order; `local` last, so only names defined there load torch.
__getattr__ = forward(__name__, "artconv.batch.jobs", "artconv.batch.manifests",
                      "artconv.batch.runner", "artconv.batch.local")
