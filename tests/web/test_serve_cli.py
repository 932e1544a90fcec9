"""`artconv serve`: a fast --help, its address printed, a token whenever it listens beyond
loopback, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from artconv.cli.serve import is_loopback
from artconv.io.images import read_recipe
from tests.conftest import run_cli

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")


def test_the_cli_loads_neither_fastapi_nor_torch():
    probe = ("import sys, artconv.cli.app; "
             "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch', 'artconv.web.app') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_loopback_names():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.com"]))


def test_a_busy_port_or_a_short_token_is_a_one_line_error(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["serve", "--port", str(port), "--out-dir", str(tmp_path)],
                               capsys)
    assert code == 2 and f"--port {port}: cannot listen" in err
    assert "Traceback" not in err
    code, _, err = run_cli(["serve", "--token", "abc", "--out-dir", str(tmp_path)], capsys)
    assert code == 2 and "--token: use at least 8 characters" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_prints_its_address_and_guards_beyond_loopback(tmp_path, host):
    env = {**os.environ, "COLUMNS": "300"}
    process = subprocess.Popen(
        [sys.executable, "-m", "artconv", "serve", "--host", host, "--port", "0",
         "--out-dir", str(tmp_path / "studio"), "--weights", "random"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        line = process.stderr.readline()
        found = re.search(r"artconv studio: (http://\S+?):(\d+)/(\?token=(\S+))?", line)
        assert found, line
        port, token = found[2], found[4]
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the socket listens before the app is up
            try:
                first = httpx.get(f"{base}/api/info", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        if host == "127.0.0.1":
            assert token is None and first.status_code == 200
            info = first.json()
            assert info["engines"]["style"]["fields"]  # the page's form
            # --weights is the server's, shown, not a field of the form
            assert info["network"]["style"]["weights"] == "random"
            assert "weights" not in {f["name"] for f in info["engines"]["style"]["fields"]}
        else:
            assert token and len(token) >= 24  # generated: nothing open without it
            assert first.status_code == 401
            assert httpx.get(f"{base}/", timeout=5).status_code == 401
            assert httpx.get(f"{base}/?token={token}", timeout=5).status_code == 200
        assert (tmp_path / "studio" / "uploads").is_dir()
    finally:
        process.terminate()
        process.wait(30)


def test_ctrl_c_while_a_page_watches_a_job_keeps_its_image(tmp_path):
    """The event stream of a running job stays open; Ctrl-C must still end the server soon,
    the job stopped with its image so far written (random VGG weights, 32 px)."""
    from tests.conftest import make_image

    process = subprocess.Popen(
        [sys.executable, "-m", "artconv", "serve", "--port", "0", "--out-dir",
         str(tmp_path / "studio"), "--weights", "random", "--arch", "vgg16"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        base = re.search(r"(http://\S+?)/", process.stderr.readline())[1]
        client = httpx.Client(base_url=base, timeout=60)
        ids = [client.post("/api/uploads", content=make_image(tmp_path / f"{i}.png",
                                                              seed=i).read_bytes()).json()["id"]
               for i in range(2)]
        job = client.post("/api/jobs", json={
            "engine": "style", "content": ids[0], "styles": [ids[1]],
            "options": {"size": "32", "iterations": "100000", "optimizer": "adam",
                        "precision": "fp32"}}).json()
        with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
            for line in stream.iter_lines():
                if '"done": 2' in line:
                    break
            process.send_signal(signal.SIGINT)
            start = time.monotonic()
            process.wait(30)
        assert time.monotonic() - start < 15
        record = tmp_path / "studio" / "results" / f"{job['id']}.studio.json"
        assert json.loads(record.read_text())["status"] == "stopped"
        assert read_recipe(record.with_name(f"{job['id']}.png"))["engine"] == "style"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize(("folder", "message"), [
    ("notes.txt", "is a file, not a folder"),
    ("notes.txt/studio", "cannot be made"),
    ("/proc/x", "cannot be made"),
    ("/proc/self", "cannot be written"),
])
def test_a_bad_studio_folder_is_one_line_before_the_port(tmp_path, capsys, monkeypatch,
                                                         folder, message):
    """Checked before the port is bound: with the port taken too, the folder is named."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["serve", "--port", str(port), "--out-dir", folder], capsys)
    assert code == 2 and f"--out-dir {folder}: {message}" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing made
    assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_a_busy_port_leaves_no_studio_folder(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["serve", "--port", str(port), "--out-dir",
                                str(tmp_path / "new" / "studio")], capsys)
    assert code == 2 and "cannot listen" in err
    assert not (tmp_path / "new").exists()


def test_a_killed_server_resumes_its_queue(tmp_path):
    """SIGKILL while a job runs and two wait: the next server on the folder runs all three."""
    from tests.conftest import make_image

    def start() -> tuple[subprocess.Popen, httpx.Client]:
        process = subprocess.Popen(
            [sys.executable, "-m", "artconv", "serve", "--port", "0", "--out-dir",
             str(tmp_path / "studio"), "--weights", "random", "--arch", "vgg16"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        base = re.search(r"(http://\S+?)/", process.stderr.readline())[1]
        client = httpx.Client(base_url=base, timeout=60)
        for _ in range(100):  # the socket is bound before the app is up
            try:
                client.get("/api/info")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        return process, client

    process, client = start()
    try:
        ids = [client.post("/api/uploads", content=make_image(
            tmp_path / f"{i}.png", seed=i).read_bytes()).json()["id"] for i in range(2)]
        form = {"engine": "style", "content": ids[0], "styles": [ids[1]],
                "options": {"size": "32", "iterations": "20", "optimizer": "adam",
                            "precision": "fp32"}}
        jobs = [client.post("/api/jobs", json=form).json()["id"] for _ in range(3)]
        with client.stream("GET", f"/api/jobs/{jobs[0]}/events") as stream:
            for line in stream.iter_lines():
                if '"done": 1' in line:
                    break
            process.kill()
            process.wait(30)
        process, client = start()
        deadline = time.monotonic() + 120
        while {j["status"] for j in client.get("/api/jobs").json()} != {"done"}:
            assert time.monotonic() < deadline, client.get("/api/jobs").json()
            time.sleep(0.2)
        assert sorted(j["id"] for j in client.get("/api/jobs").json()) == sorted(jobs)
        for jid in jobs:
            assert read_recipe(tmp_path / "studio" / "results" / f"{jid}.png")["engine"] \
                == "style"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_damaged_queue_file_is_one_line_and_kept(tmp_path, capsys):
    folder = tmp_path / "studio"
    folder.mkdir()
    (folder / "queue.json").write_text('{"jobs": [')
    code, _, err = run_cli(["serve", "--port", "0", "--out-dir", str(folder)], capsys)
    assert code == 2 and "queue.json: not a studio queue" in err and "move it away" in err
    assert "Traceback" not in err
    assert (folder / "queue.json").read_text() == '{"jobs": ['
