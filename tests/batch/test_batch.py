"""Batch rendering: grids, resuming, failure isolation, work done once, batched optimisation,
manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from artconv import batch
from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe
from tests.conftest import make_image, run_cli, style_grid

ARTCONV = [sys.executable, "-m", "artconv"]



@pytest.fixture
def grid(tmp_path, backbone_file):
    return style_grid(tmp_path, backbone_file, contents=3)


def test_grid_renders_skips_and_overwrites(tmp_path, grid):
    contents, styles, opts = grid
    jobs = batch.plan("style", [str(c) for c in contents], styles=styles,
                      out_dir=tmp_path / "out")
    names = sorted(Path(j.output).name for j in jobs)
    assert names == sorted(f"photo{i}_paint{k}.png" for i in range(3) for k in range(2))
    report = batch.render(jobs, {"style": opts})
    assert report.count("done") == 6 and report.ok
    for job in jobs:
        assert load_image(job.output).shape == (3, 26, 32)
        assert read_recipe(job.output)["engine"] == "style"
    mtimes = {j.output: os.stat(j.output).st_mtime_ns for j in jobs}
    again = batch.render(jobs, {"style": opts})
    assert again.count("skipped") == 6 and again.count("done") == 0
    assert all(os.stat(j.output).st_mtime_ns == mtimes[j.output] for j in jobs)
    redo = batch.render(jobs, {"style": opts}, overwrite=True)
    assert redo.count("done") == 6
    assert all(os.stat(j.output).st_mtime_ns != mtimes[j.output] for j in jobs)


def test_network_and_style_targets_computed_once_per_style(tmp_path, grid):
    contents, styles, opts = grid
    jobs = batch.plan("style", [str(c) for c in contents], styles=styles, out_dir=tmp_path / "o")
    runner = batch.LocalRunner()
    report = batch.render(jobs, {"style": opts.replace(scales=(24, 32))}, runner=runner)
    assert report.count("done") == 6
    assert runner.stats["networks_loaded"] == 1
    # two styles x two scales, shared by the three contents (one engine keeps them)
    assert report.stats["style_targets_computed"] == 2 * 2
    assert len(runner._engines) == 1


def test_batched_optimisation_equals_single_runs(tmp_path, grid):
    contents, styles, opts = grid
    for optimizer in ("lbfgs", "adam"):
        o = opts.replace(optimizer=optimizer, iterations=(5,))
        jobs = batch.plan("style", [str(c) for c in contents[:2]], styles=styles[:1],
                          out_dir=tmp_path / f"k2_{optimizer}")
        batch.render(jobs, {"style": o}, batch_size=2)
        singles = batch.plan("style", [str(c) for c in contents[:2]], styles=styles[:1],
                             out_dir=tmp_path / f"k1_{optimizer}")
        batch.render(singles, {"style": o}, batch_size=1)
        for a, b in zip(jobs, singles, strict=True):
            diff = (load_image(a.output) - load_image(b.output)).abs().max().item()
            assert diff <= 2 / 255, (optimizer, diff)


def test_corrupt_input_fails_alone_with_reason(tmp_path, grid, capsys):
    contents, styles, opts = grid
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(make_image(tmp_path / "x.png").read_bytes()[:60])
    report_path = tmp_path / "report.json"
    code, _, err = run_cli(["batch", "style", str(contents[0]), str(bad), str(contents[1]),
                            "--styles", str(styles[0]), "--out-dir", str(tmp_path / "out"),
                            "--backbone", opts.backbone, "--size", "32", "--iterations", "2",
                            "--content-layers", "r2", "--style-layers", "r1,r2",
                            "--report", str(report_path), "--quiet"], capsys)
    assert code == 1, err
    assert "Traceback" not in err
    report = json.loads(report_path.read_text())
    assert (report["done"], report["failed"]) == (2, 1)
    failed = [j for j in report["jobs"] if j["status"] == "failed"]
    assert failed[0]["input"].endswith("broken.png")
    assert "broken.png" in failed[0]["reason"] and "truncated" in failed[0]["reason"]
    # --quiet hides the table, never the failures
    assert [ln for ln in err.splitlines() if ln.startswith("failed:")] == [
        f"failed: {tmp_path / 'out' / 'broken_paint0.png'}: {failed[0]['reason']}"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo0_paint0.png", "photo1_paint0.png"]


def test_killed_batch_leaves_no_partial_file_and_rerun_completes(tmp_path, grid):
    contents, styles, opts = grid
    out = tmp_path / "out"
    cmd = [*ARTCONV, "batch", "style", *map(str, contents), "--styles",
           ",".join(map(str, styles)), "--out-dir", str(out), "--backbone", opts.backbone,
           "--size", "48", "--iterations", "40", "--content-layers", "r2",
           "--style-layers", "r1,r2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and any(out.glob("*.png"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(out.glob("*.png"))
    assert 1 <= len(written) < 6, "kill landed mid-batch"
    assert not [p for p in out.iterdir() if p.suffix != ".png"], "no temp files left"
    for path in written:
        load_image(path)  # every file present is whole
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["skipped"] == len(written) and summary["done"] == 6 - len(written)


def test_manifest_relative_paths_and_overrides(tmp_path, grid, backbone_file):
    contents, styles, opts = grid
    folder = tmp_path / "in"
    manifest = folder / "jobs.jsonl"
    manifest.write_text("\n".join([
        "# one job a line",
        json.dumps({"input": "photo0.png", "styles": ["../styles/paint0.png"],
                    "output": "../m/a.png", "options": {"iterations": [2]}}),
        json.dumps({"engine": "style", "input": "photo1.png",
                    "styles": ["../styles/paint1.png"], "output": "../m/b.png"}),
    ]))
    jobs = batch.read_manifest(manifest)
    assert [j.engine for j in jobs] == ["style", "style"]
    assert Path(jobs[0].input) == folder / "photo0.png"
    assert Path(jobs[0].output).resolve() == (tmp_path / "m" / "a.png").resolve()
    report = batch.render(jobs, {"style": opts})
    assert report.count("done") == 2
    assert read_recipe(tmp_path / "m" / "a.png")["options"]["iterations"] == [2]
    assert read_recipe(tmp_path / "m" / "b.png")["options"]["iterations"] == [3]


def test_manifest_toml(tmp_path):
    manifest = tmp_path / "jobs.toml"
    manifest.write_text('engine = "dream"\n[[job]]\ninput = "a.png"\noutput = "out/a.png"\n'
                        '[job.options]\nsteps = 3\n')
    (job,) = batch.read_manifest(manifest)
    assert job.engine == "dream" and job.options == {"steps": 3}
    assert Path(job.output) == tmp_path / "out" / "a.png"


def test_manifest_unknown_key_names_the_line(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"input": "a.png", "styles": ["s.png"]}\n'
                        '{"input": "b.png", "styles": ["s.png"], "colour": 1}\n')
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:2: unknown key 'colour'"):
        batch.read_manifest(manifest)
    manifest.write_text('{"input": "a.png", "styles": ["s.png"], "options": {"itrs": 3}}\n')
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:1: unknown option 'itrs'"):
        batch.read_manifest(manifest)


def test_colliding_template_fails_before_any_work(tmp_path, grid, capsys):
    contents, styles, opts = grid
    out = tmp_path / "out"
    with pytest.raises(ArtconvError,
                       match=r"jobs collide .*would both write it.*\{content\} and \{style\}"):
        batch.plan("style", [str(c) for c in contents], styles=styles, out_dir=out,
                   template="{content}.png")
    code, _, err = run_cli(["batch", "style", *map(str, contents), "--styles",
                            ",".join(map(str, styles)), "--out-dir", str(out),
                            "--template", "{style}.png", "--weights", "random"], capsys)
    assert code == 2 and "collide" in err and "Traceback" not in err
    assert not out.exists()


def test_contact_sheet_and_json_summary(tmp_path, grid, capsys):
    contents, styles, opts = grid
    sheet = tmp_path / "grid.png"
    code, out, err = run_cli(["batch", "style", *map(str, contents[:2]), "--styles",
                              ",".join(map(str, styles)), "--out-dir", str(tmp_path / "out"),
                              "--backbone", opts.backbone, "--size", "32", "--iterations",
                              "1", "--content-layers", "r2", "--style-layers", "r1,r2",
                              "--sheet", str(sheet), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["done"] == 4
    image = load_image(sheet)
    thumb, gap = 192, 6
    # a header row of square styles, then two rows as tall as their 32x26 results are at
    # `thumb` wide (a 40x32 photo is a little shorter): no padding to squares
    row = round(thumb * 26 / 32)
    assert image.shape == (3, gap + thumb + 2 * (row + gap) + gap, 3 * (thumb + gap) + gap)
    # the top-left corner cell is empty background; the first style sits to its right
    corner = image[:, gap + 10, gap + 10]
    cell = image[:, gap + thumb // 2, 2 * gap + thumb + thumb // 2]
    assert torch.allclose(corner, torch.tensor([24, 24, 24]) / 255, atol=1e-3)
    assert not torch.allclose(cell, corner, atol=0.05)


def test_dream_and_features_jobs_share_one_network(tmp_path, backbone_file):
    from artconv.deepdream.engine import DreamOptions
    from artconv.features import FeatureOptions

    images = [make_image(tmp_path / f"f{i}.png", (40, 32), seed=i) for i in range(2)]
    backbone = f"{backbone_file}:build"
    jobs = batch.plan("dream", images, out_dir=tmp_path / "dreams") + batch.plan(
        "features", images, out_dir=tmp_path / "feats")
    runner = batch.LocalRunner()
    report = batch.render(jobs, {
        "dream": DreamOptions(backbone=backbone, layers=("r3",), steps=2, octaves=1),
        "features": FeatureOptions(backbone=backbone, layers=("r1", "r3"))}, runner=runner)
    assert report.count("done") == 4, report.to_dict()
    assert runner.stats["networks_loaded"] == 1
    import numpy as np

    arr = np.load(tmp_path / "feats" / "f0.npy")
    assert arr.shape == (8 + 16, 32, 40)
    assert load_image(tmp_path / "dreams" / "f1_dream.png").shape == (3, 32, 40)


class _InterruptAfterOne(batch.LocalRunner):
    """Simulates Ctrl-C after the first finished job."""

    def run(self, jobs, options, *, batch_size, progress, on_result):
        def first_then_stop(result):
            on_result(result)
            raise KeyboardInterrupt

        return super().run(jobs, options, batch_size=batch_size, progress=progress,
                           on_result=first_then_stop)


def test_ctrl_c_reports_what_was_done(tmp_path, grid):
    contents, styles, opts = grid
    jobs = batch.plan("style", contents, styles=styles[:1], out_dir=tmp_path / "out")
    report = batch.render(jobs, {"style": opts.replace(iterations=(1,))},
                          runner=_InterruptAfterOne())
    assert report.interrupted and not report.ok
    assert [r.status for r in report.results].count("done") == 1
    assert [r.status for r in report.results].count("interrupted") == 2
    assert report.to_dict()["interrupted"] is True


def test_sheet_and_failure_count_with_a_bad_input(tmp_path, grid):
    from artconv.progress import Progress

    contents, styles, opts = grid
    bad = tmp_path / "in" / "bad.png"
    bad.write_text("not an image")
    jobs = batch.plan("style", [*contents[:2], bad], styles=styles[:1], out_dir=tmp_path / "o")
    counts = []
    progress = Progress(quiet=True)
    original = progress.task

    def spy(description, total):
        task = original(description, total)
        task.update = lambda advance=1, **figures: counts.append(figures.get("failed"))
        return task

    progress.task = spy
    report = batch.render(jobs, {"style": opts.replace(iterations=(1,))}, progress=progress)
    assert report.count("failed") == 1 and counts[-1] == 1
    sheet = batch.sheet_for(report, tmp_path / "sheet.png")  # the bad row is left blank
    # rows: the square style's header, two 26x32 photos at the 192 px thumb, and the bad
    # input's row of empty boxes (a thumb high); each followed by the 6 px gap
    row = round(192 * 26 / 32)
    assert load_image(sheet).shape[-2:] == (6 + 198 + 2 * (row + 6) + 198, 2 * 198 + 6)


def test_one_job_hands_the_engine_its_photo_not_a_stacked_copy(tmp_path, grid, monkeypatch):
    """A chunk of one image (every single job and print) is passed as a view of the loaded
    photo: stacking it would copy the photo (12 bytes per pixel at print size)."""
    from artconv.style import StyleTransfer

    contents, styles, opts = grid
    seen = []
    real = StyleTransfer.run

    def spy(self, content, *args, **kwargs):
        seen.append(content._base is not None)
        return real(self, content, *args, **kwargs)

    monkeypatch.setattr(StyleTransfer, "run", spy)
    jobs = batch.plan("style", [str(contents[0])], styles=styles[:1], out_dir=tmp_path / "o")
    report = batch.render(jobs, {"style": opts.replace(iterations=(1,))})
    assert report.ok and seen == [True]
