"""The page's one stream of changes (`/api/events`) on a live server: the queue, every job's
progress and a sweep's sheet arrive on it as they change, and nothing while nothing does."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import make_image
from tests.web.conftest import live_server, tiny_defaults

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")


def messages(lines):
    """The data of each server-sent event (keep-alive comments skipped)."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def test_one_stream_carries_the_queue_the_jobs_and_the_sweeps(tmp_path, backbone_file):
    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    studio = Studio(tmp_path / "studio", defaults=tiny_defaults(backbone_file))
    with live_server(create_app(studio)) as url, httpx.Client(base_url=url,
                                                              timeout=30) as client:
        ids = [client.post("/api/uploads", content=make_image(
            tmp_path / f"{i}.png", seed=i).read_bytes()).json()["id"] for i in range(2)]
        form = {"engine": "style", "content": ids[0], "styles": [ids[1]]}
        with client.stream("GET", "/api/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = messages(stream.iter_lines())
            assert next(received) == {"queue": [], "jobs": [], "sweeps": []}  # nothing yet
            job = client.post("/api/jobs", json={**form, "options": {
                "optimizer": "adam", "iterations": "100000"}}).json()["id"]  # until stopped
            sweep = client.post("/api/sweeps", json={
                "form": form, "option": "pooling", "values": ["max", "avg", "strided"]}).json()
            seen: dict[str, list[dict]] = {}
            places, sheets, count = {}, [], 0
            start = time.monotonic()
            for update in received:
                count += 1
                assert time.monotonic() < start + 60, seen
                for line in update["queue"]:
                    if "position" in line:
                        places.setdefault(line["id"], line["position"])
                for state in update["jobs"]:
                    seen.setdefault(state["id"], []).append(state)
                for state in update["sweeps"]:
                    assert state["id"] == sweep["id"]
                    sheets.append(state)
                if len(places) == 3 and seen.get(job, [{}])[-1].get("status") == "running":
                    client.post(f"/api/jobs/{job}/stop")  # the sweep waited behind it
                if sheets and sheets[-1]["finished"]:
                    break
            elapsed = time.monotonic() - start
        # Every job's progress came on the one stream, up to its end, with its loss curve.
        assert set(seen) == {job, *(j["id"] for j in sweep["jobs"])}
        assert seen[job][-1]["status"] == "stopped"
        for sid in (j["id"] for j in sweep["jobs"]):
            assert seen[sid][-1]["status"] == "done" and seen[sid][-1]["step"]["done"] == 3
            assert seen[sid][-1]["curve"]["points"]
        assert places == {j["id"]: i + 1 for i, j in enumerate(sweep["jobs"])}  # waiting
        # The sweep: brief job lines, the sheet redrawn as each job ended.
        assert [j["status"] for j in sheets[-1]["jobs"]] == ["done"] * 3
        assert sheets[-1]["sheet"].endswith("?v=3")
        # A burst of steps is one message: a few a second at most.
        assert count <= elapsed * studio.previews_per_second + 2, (count, elapsed)

        # Nothing changes, nothing is sent.
        with httpx.Client(base_url=url, timeout=1.5) as short, \
                short.stream("GET", "/api/events") as stream:
            received = messages(stream.iter_lines())
            assert next(received) == {"queue": [], "jobs": [], "sweeps": []}  # all over
            with pytest.raises(httpx.ReadTimeout):
                next(received)
