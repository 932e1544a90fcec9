"""Manifests: a batch's jobs from a file, one job a line (JSON Lines) or `[[job]]` tables
(TOML), each checked against its engine's options with the file and line named."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

from artconv.batch.jobs import Job, check_collisions
from artconv.errors import ArtconvError


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
