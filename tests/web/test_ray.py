"""`artconv serve --engine ray`: the studio's queue on a Ray worker (a local Ray instance,
the tiny backbone, 32 px): live steps and previews, one network kept loaded across jobs,
Stop keeping the image so far, features as a PCA picture; and the CLI's errors."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
import warnings

import httpx
import pytest
from PIL import Image

from artconv.io.images import read_recipe
from tests.conftest import local_ray, make_image, run_cli
from tests.web.conftest import tiny_defaults
from tests.web.test_api import events, inputs, wait_for

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")

try:
    import ray
except ImportError:  # the tests below that need it skip
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray not installed (artconv[ray])")


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A local Ray instance with 2 CPUs for this module; its GCS address (HOST:PORT)."""
    with local_ray(tmp_path_factory) as address:
        yield address


@pytest.fixture
def make_ray_client(studio_folder, backbone_file, ray_address):
    """`make_ray_client(workers=1)`: a TestClient on a studio whose queue runs on Ray
    (`--engine ray`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from artconv.web.app import create_app
    from artconv.web.runner import StudioRayRunner
    from artconv.web.studio import Studio

    opened = []

    def make(workers: int = 1, **style):
        studio = Studio(studio_folder, defaults=tiny_defaults(backbone_file, **style),
                        workers=workers)
        studio.runner = StudioRayRunner(studio.on_step, address=ray_address, max_retries=0,
                                        workers=workers)
        studio.runner.connect()
        client = TestClient(create_app(studio), base_url="http://127.0.0.1")
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
        assert len(client.app.state.studio.runner.pool) == 0  # closing ended the workers


@pytest.fixture
def ray_client(make_ray_client):
    return make_ray_client()


@pytest.mark.ray
@needs_ray
def test_ray_queue_streams_steps_and_keeps_one_network(ray_client, tmp_path):
    client = ray_client
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    first = client.post("/api/jobs", json={**form, "options": {"seed": "2"}}).json()["id"]
    second = client.post("/api/jobs", json={**form, "options": {"seed": "3"}}).json()["id"]
    states = events(client, first)
    final = states[-1]
    assert final["status"] == "done", final["error"]
    assert final["step"]["done"] == final["step"]["total"] == 3
    assert final["curve"]["name"] == "loss" and len(final["curve"]["points"]) == 3
    assert final["preview"] >= 1  # made on the worker, relayed to the page
    preview = client.get(f"/api/jobs/{first}/preview")
    assert Image.open(io.BytesIO(preview.content)).size == (32, 27)
    assert events(client, second)[-1]["status"] == "done"
    for jid, seed in ((first, 2), (second, 3)):
        recipe = read_recipe(tmp_path / "studio" / "results" / f"{jid}.png")
        assert recipe["engine"] == "style" and recipe["options"]["seed"] == seed
    assert {e["id"] for e in client.get("/api/gallery").json()} == {first, second}
    stats = client.app.state.studio.runner.stats
    assert stats["ray_tasks"] == 2
    assert stats["networks_loaded"] == 1  # the worker kept it between jobs

    jid = client.post("/api/jobs", json={"engine": "features", "content": content}).json()["id"]
    assert events(client, jid)[-1]["status"] == "done"
    assert "pca" in read_recipe(tmp_path / "studio" / "results" / f"{jid}.png")


@pytest.mark.ray
@needs_ray
def test_stop_on_ray_keeps_the_image_so_far(ray_client, tmp_path):
    client = ray_client
    content, style = inputs(client, tmp_path)
    jid = client.post("/api/jobs", json={
        "engine": "style", "content": content, "styles": [style],
        "options": {"optimizer": "adam", "iterations": "100000"}}).json()["id"]
    running = wait_for(client, jid, lambda s: s["step"].get("done", 0) >= 5, timeout=120)
    assert running["status"] == "running"
    client.post(f"/api/jobs/{jid}/stop")
    final = wait_for(client, jid, lambda s: s["status"] not in ("queued", "running"),
                     timeout=60)
    assert final["status"] == "stopped" and final["result"] == f"{jid}.png"
    assert final["step"]["done"] < 100_000
    assert read_recipe(tmp_path / "studio" / "results" / f"{jid}.png")["engine"] == "style"


@pytest.mark.ray
@needs_ray
def test_two_workers_run_two_jobs_at_once(make_ray_client, tmp_path):
    client = make_ray_client(workers=2, optimizer="adam", iterations=[100_000])
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    ids = [client.post("/api/jobs", json={**form, "options": {"seed": str(i)}}).json()["id"]
           for i in range(3)]
    for jid in ids[:2]:  # both running, each relaying its own steps
        wait_for(client, jid, lambda s: s["step"].get("done", 0) >= 3, timeout=120)
    assert client.get(f"/api/jobs/{ids[2]}").json()["status"] == "queued"
    client.post(f"/api/jobs/{ids[2]}/stop")
    for jid in ids[:2]:
        client.post(f"/api/jobs/{jid}/stop")
    for jid in ids[:2]:
        final = wait_for(client, jid, lambda s: s["status"] not in ("queued", "running"),
                         timeout=60)
        assert final["status"] == "stopped", final
        assert read_recipe(tmp_path / "studio" / "results" / f"{jid}.png")["engine"] == "style"
    assert client.get(f"/api/jobs/{ids[2]}").json()["status"] == "cancelled"


@pytest.mark.ray
@needs_ray
def test_more_workers_than_the_cluster_holds_is_an_error(ray_address):
    from artconv.errors import ArtconvError
    from artconv.web.runner import StudioRayRunner

    runner = StudioRayRunner(lambda step: True, address=ray_address, workers=3)
    with pytest.raises(ArtconvError, match="--workers 3: the Ray cluster holds 2"):
        runner.connect()
    gpus = StudioRayRunner(lambda step: True, address=ray_address, gpus_per_job=1)
    with pytest.raises(ArtconvError, match="--gpus-per-job 1: the Ray cluster has 0 GPUs"):
        gpus.connect()


def test_serve_engine_errors_are_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["serve", "--engine", "spark", "--out-dir", str(tmp_path)], capsys)
    assert code == 2 and "--engine 'spark': choose local or ray" in err
    code, _, err = run_cli(["serve", "--workers", "2", "--out-dir", str(tmp_path)], capsys)
    assert code == 2 and "--workers 2: needs --engine ray" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, out, err = run_cli(["serve", "--engine", "ray", "--port", "0",
                              "--out-dir", str(tmp_path)], capsys)
    assert code == 2 and "pip install 'artconv[ray]'" in " ".join((out + err).split())
    assert "Traceback" not in err


@pytest.mark.ray
@needs_ray
def test_serve_engine_ray_runs_jobs_on_the_cluster(tmp_path, ray_address):
    """The command itself: joins the cluster at --address, a job runs there, Ctrl-C ends
    the server and its worker."""
    process = subprocess.Popen(
        [sys.executable, "-m", "artconv", "serve", "--port", "0", "--out-dir",
         str(tmp_path / "studio"), "--weights", "random", "--arch", "vgg16", "--engine",
         "ray", "--address", ray_address],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        base = None
        for line in process.stderr:
            found = re.search(r"artconv studio: (http://\S+?)/", line)
            base = base or (found and found[1])
            if "jobs run on Ray" in line:
                break
        assert base, "no address printed"
        client = httpx.Client(base_url=base, timeout=60)
        for _ in range(100):  # the socket listens before the app is up
            try:
                client.get("/api/info")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        ids = [client.post("/api/uploads", content=make_image(tmp_path / f"{i}.png",
                                                              seed=i).read_bytes()).json()["id"]
               for i in range(2)]
        job = client.post("/api/jobs", json={
            "engine": "style", "content": ids[0], "styles": [ids[1]],
            "options": {"size": "32", "iterations": "2", "precision": "fp32"}}).json()
        deadline = time.monotonic() + 120
        while (state := client.get(f"/api/jobs/{job['id']}").json())["status"] in (
                "queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["status"] == "done", state["error"]
        result = tmp_path / "studio" / "results" / f"{job['id']}.png"
        assert read_recipe(result)["engine"] == "style"
        process.send_signal(signal.SIGINT)
        assert process.wait(30) in (0, 130)  # uvicorn hands Ctrl-C on once it shut down
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    deadline = time.monotonic() + 30  # its worker's CPU is the cluster's again
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.2)
