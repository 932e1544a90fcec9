"""Batch rendering on Ray: same files as the local runner, failure isolation and resuming,
a killed worker retried without leftovers, and the install hint without Ray.

The Ray tests share one local Ray instance (2 CPUs) started by a module fixture; they are
marked `ray` and skipped when Ray is not installed."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from artconv import batch
from artconv.errors import ArtconvError
from artconv.io.images import atomic_path, load_image
from tests.conftest import local_ray, make_image, run_cli, style_grid

try:
    import ray
except ImportError:  # the tests below that need it skip
    ray = None


needs_ray = pytest.mark.skipif(ray is None, reason="Ray not installed (artconv[ray])")


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A local Ray instance with 2 CPUs for this module; its GCS address (HOST:PORT)."""
    with local_ray(tmp_path_factory) as address:
        # test-only runner classes below travel by value (workers can't import this module)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield address
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def grid(tmp_path, backbone_file):
    return style_grid(tmp_path, backbone_file, contents=2)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".png")


class KillOnceRunner(batch.LocalRunner):
    """Test-only worker runner: the first job to reach it (no marker file yet) SIGKILLs its
    own worker process halfway through writing its output; every later attempt renders."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = Path(marker)

    def _run_chunk(self, spec, engine, chunk, *args, **kw):
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            with atomic_path(chunk[0][0].output, suffix_hint=".png") as tmp:
                tmp.write_bytes(b"\x89PNG\r\n\x1a\n half a file")
                os.kill(os.getpid(), signal.SIGKILL)
        return super()._run_chunk(spec, engine, chunk, *args, **kw)


@pytest.mark.usefixtures("ray_address")
@pytest.mark.ray
@needs_ray
def test_ray_renders_the_same_files_as_local(tmp_path, grid):
    from artconv.batch.ray import RayRunner

    contents, styles, opts = grid
    batch_size = 2
    local = batch.plan("style", list(map(str, contents)), styles=styles,
                       out_dir=tmp_path / "local")
    distributed = batch.plan("style", list(map(str, contents)), styles=styles,
                             out_dir=tmp_path / "ray")
    assert batch.render(local, {"style": opts}, batch_size=batch_size).count("done") == 4
    runner = RayRunner(max_retries=0)
    report = batch.render(distributed, {"style": opts}, runner=runner, batch_size=batch_size)
    assert report.count("done") == 4 and report.ok, report.to_dict()
    for a, b in zip(local, distributed, strict=True):
        diff = (load_image(a.output) - load_image(b.output)).abs().max().item()
        assert diff <= 2 / 255, (b.output, diff)
    # one task per style (2 same-sized contents each); a network per worker at most
    assert report.stats["ray_tasks"] == 2
    assert 1 <= report.stats["networks_loaded"] <= report.stats["ray_workers"] <= 2
    assert report.stats["style_targets_computed"] == 2
    assert _leftovers(tmp_path / "ray") == []


@pytest.mark.ray
@needs_ray
def test_bad_input_fails_alone_and_rerun_skips(tmp_path, grid, ray_address, capsys):
    from artconv.batch.ray import RayRunner

    contents, styles, opts = grid
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(make_image(tmp_path / "x.png").read_bytes()[:60])
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    code, _, err = run_cli(["batch", "style", str(contents[0]), str(bad), str(contents[1]),
                            "--styles", str(styles[0]), "--out-dir", str(out),
                            "--engine", "ray", "--address", ray_address,
                            "--backbone", opts.backbone, "--size", "32", "--iterations", "2",
                            "--content-layers", "r2", "--style-layers", "r1,r2",
                            "--report", str(report_path), "--quiet"], capsys)
    assert code == 1, err
    assert "Traceback" not in err
    report = json.loads(report_path.read_text())
    assert (report["done"], report["failed"], report["skipped"]) == (2, 1, 0)
    (failed,) = [j for j in report["jobs"] if j["status"] == "failed"]
    assert failed["input"].endswith("broken.png") and "truncated" in failed["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["photo0_paint0.png", "photo1_paint0.png"]
    # re-run (through the API this time): finished outputs skipped, the bad one fails again
    jobs = batch.plan("style", [str(contents[0]), str(bad), str(contents[1])],
                      styles=styles[:1], out_dir=out)
    again = batch.render(jobs, {"style": opts.replace(iterations=(2,))},
                         runner=RayRunner(ray_address))
    status = {Path(r.job.input).name: r.status for r in again.results}
    assert status == {"photo0.png": "skipped", "broken.png": "failed", "photo1.png": "skipped"}
    assert "truncated" in next(r.reason for r in again.results if r.status == "failed")


@pytest.mark.ray
@needs_ray
@pytest.mark.usefixtures("ray_address")
def test_killed_worker_is_retried_and_leaves_no_partial_output(tmp_path, grid):
    from artconv.batch.ray import RayRunner

    contents, styles, opts = grid
    out, marker = tmp_path / "out", tmp_path / "killed.pid"
    jobs = batch.plan("style", list(map(str, contents)), styles=styles[:1], out_dir=out)
    runner = RayRunner(max_retries=1,
                       worker_runner=functools.partial(KillOnceRunner, str(marker)))
    report = batch.render(jobs, {"style": opts}, runner=runner)
    assert marker.exists(), "a worker was killed mid-write"
    assert [r.status for r in report.results] == ["done", "done"], report.to_dict()
    for job in jobs:
        load_image(job.output)  # whole files
    assert _leftovers(out) == []
    assert report.stats["temp_files_swept"] == 1  # the killed attempt's temp file

    # with no retries left, the killed job fails alone, with the reason, and leaves nothing
    marker.unlink()
    for job in jobs:
        os.unlink(job.output)
    report = batch.render(jobs, {"style": opts}, runner=RayRunner(
        max_retries=0, worker_runner=functools.partial(KillOnceRunner, str(marker))))
    assert sorted(r.status for r in report.results) == ["done", "failed"]
    (failed,) = [r for r in report.results if r.status == "failed"]
    assert "worker died" in failed.reason
    assert not Path(failed.job.output).exists() and _leftovers(out) == []


def test_missing_ray_gives_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    from artconv.batch.ray import INSTALL_HINT, RayRunner

    with pytest.raises(ArtconvError, match=r"pip install 'artconv\[ray\]'"):
        RayRunner()
    image = make_image(tmp_path / "a.png")
    code, out, err = run_cli(["batch", "dream", str(image), "--engine", "ray",
                              "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert INSTALL_HINT in " ".join((out + err).split())
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
