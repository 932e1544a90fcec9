"""`artconv serve`: the local web studio (artconv.web), started on uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from artconv import registry
from artconv.batch.options import RayOptions
from artconv.cli.common import console, flag_option
from artconv.errors import ArtconvError
from artconv.outputs import check_folder

if TYPE_CHECKING:
    from artconv.web.studio import Studio


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but "
                             "loopback needs a token (--token, or one is generated)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free)."),
    out_dir: str = typer.Option("~/artconv-studio", "--out-dir",
                                help="Studio folder: uploads, results with recipes, sweeps."),
    token: Optional[str] = typer.Option(  # noqa: UP045
        None, "--token", help="Require this token on every request (the page included)."),
    weights: Optional[str] = typer.Option(  # noqa: UP045
        None, "--weights", help="Network weights for every job (imagenet, caffe, random or "
        "a file); the page cannot change them."),
    arch: Optional[str] = typer.Option(  # noqa: UP045
        None, "--arch", help="VGG architecture for every job (vgg16 or vgg19); the page "
        "cannot change it."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.1,
                                        help="Largest upload accepted, in MB."),
    engine: str = typer.Option("local", "--engine", help="Where the queue runs: local (this "
                               "process) or ray (workers on a Ray cluster, see --workers)."),
    address: str = flag_option(RayOptions, "address"),
    gpus_per_job: float = flag_option(RayOptions, "gpus_per_job"),
    cpus_per_job: float = flag_option(RayOptions, "cpus_per_job"),
    max_retries: int = flag_option(RayOptions, "max_retries"),
    workers: int = typer.Option(1, "--workers", min=1,
                                help="Ray: jobs run at once, each on its own worker (one per "
                                "GPU with --gpus-per-job 1)."),
) -> None:
    """A local web studio: live previews, Stop, a gallery with recipes, settings sweeps.

    Pick a content image and styles (files or presets), an engine and its options, and
    watch the image optimise; results are kept under --out-dir with their recipes."""
    try:
        import uvicorn

        from artconv.web.app import create_app
    except ImportError as exc:
        raise ArtconvError(f"artconv serve needs the web extra ({exc.name} is missing): "
                           "pip install 'artconv[web]'") from None

    token, generated = _token(host, token)
    if engine not in ("local", "ray"):
        raise ArtconvError(f"--engine {engine!r}: choose local or ray")
    if workers > 1 and engine != "ray":
        raise ArtconvError(f"--workers {workers}: needs --engine ray (here jobs run one at a "
                           "time on this machine's device)")
    # Everything that can be checked without writing is checked before the port is bound,
    # and nothing is made in the folder until the port is ours.
    check_folder(Path(out_dir).expanduser(), "--out-dir")
    sock = _listen(host, port)
    try:
        studio = _studio(out_dir, weights=weights, arch=arch, workers=workers,
                         max_upload=int(max_upload_mb * 1024 * 1024))
        if engine == "ray":
            _join_ray(studio, address=address, gpus_per_job=gpus_per_job,
                      cpus_per_job=cpus_per_job, max_retries=max_retries, workers=workers)
    except BaseException:
        sock.close()
        raise
    app = create_app(studio, token=token, hosts=_hosts(host))
    _announce(host, sock.getsockname()[1], token, studio, generated, ray=engine == "ray")
    # A page keeps its event stream open: Ctrl-C must not wait for it, nor for a running
    # job to end (the studio then stops it, keeping its image so far).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=3))
    server.run(sockets=[sock])


def _token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token every request needs (one is generated beyond loopback), and whether it
    was generated."""
    if token is not None and len(token) < 8:
        raise ArtconvError("--token: use at least 8 characters")
    if token is None and not is_loopback(host):
        return secrets.token_urlsafe(24), True
    return token, False


def _studio(out_dir: str, *, weights: str | None, arch: str | None, workers: int,
            max_upload: int) -> Studio:
    """The studio on `out_dir`, its network the server's: the page never changes it (no
    downloads a page could start)."""
    from artconv.web.studio import Studio

    network = {k: v for k, v in (("weights", weights), ("arch", arch)) if v is not None}
    defaults = {name: network for name in registry.ENGINES} if network else {}
    return Studio(out_dir, defaults=defaults, max_upload=max_upload, workers=workers)


def _join_ray(studio: Studio, *, workers: int, **cluster: Any) -> None:
    """The studio's queue on Ray workers, the cluster joined now: a wrong address or flag
    is an error before serving."""
    from artconv.web.runner import StudioRayRunner

    studio.runner = StudioRayRunner(studio.on_step, workers=workers, **cluster)
    try:
        studio.runner.connect()
    except BaseException:
        studio.close()  # ends Ray if joining started it and a check then failed
        raise


def _hosts(host: str) -> list[str]:
    """The host names requests may name (DNS rebinding); any name on a wildcard address."""
    from artconv.web.app import LOOPBACK_NAMES

    if is_loopback(host):
        return list(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::"):
        return ["*"]
    return [host, f"[{host}]", *LOOPBACK_NAMES]


def _announce(host: str, port: int, token: str | None, studio: Studio, generated: bool,
              *, ray: bool) -> None:
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"artconv studio: {address}", highlight=False, soft_wrap=True)
    console.print(f"folder: {studio.folder}", highlight=False, soft_wrap=True)
    if studio.resumed:
        console.print(f"resumed {studio.resumed} queued job{'s' if studio.resumed > 1 else ''} "
                      "the last server on this folder left", highlight=False)
    if ray:
        console.print(f"jobs run on Ray ({studio.workers} worker"
                      f"{'s' if studio.workers > 1 else ''}, networks kept loaded)",
                      highlight=False)
    if generated:
        console.print("listening beyond this machine: every request needs the token above "
                      "(generated; give --token to choose one)", highlight=False)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ArtconvError(f"--host {host} --port {port}: cannot listen ({exc.strerror})") \
            from None
    return sock


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
