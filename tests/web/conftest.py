"""The studio on the tiny backbone (no downloads): a Studio, its app, and a live server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def tiny_defaults(backbone: Path, **style: Any) -> dict[str, dict[str, Any]]:
    """Studio defaults that make every engine run in well under a second on 32 px."""
    net = f"{backbone}:build"
    return {
        "style": {"backbone": net, "content_layers": ["r2"], "style_layers": ["r1", "r2"],
                  "size": 32, "iterations": [3], "precision": "fp32", **style},
        "dream": {"backbone": net, "layers": ["r3"], "size": 32, "octaves": 1, "steps": 3,
                  "precision": "fp32"},
        "features": {"backbone": net, "layers": ["r1", "r2"], "size": 32,
                     "precision": "fp32"},
    }


@pytest.fixture
def studio_folder(tmp_path) -> Path:
    return tmp_path / "studio"


@pytest.fixture
def make_client(studio_folder, backbone_file):
    """`make_client(token=None, **style_defaults)`: a TestClient on a fresh studio (its
    worker runs while the client is open)."""
    with warnings.catch_warnings():  # Starlette's note on httpx versions, not ours
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    opened = []

    def make(token: str | None = None, max_upload: int | None = None,
             **style: Any) -> TestClient:
        studio = Studio(studio_folder, defaults=tiny_defaults(backbone_file, **style),
                        **({"max_upload": max_upload} if max_upload else {}))
        client = TestClient(create_app(studio, token=token), base_url="http://127.0.0.1")
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """The app on uvicorn in a thread, on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the studio server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
