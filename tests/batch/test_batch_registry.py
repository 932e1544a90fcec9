"""Batches find engines in the registry only: an engine added there (a test engine that
inverts its images) plans, runs in batches, reports progress, writes with its recipe and
reads from manifests and presets without a line of batch code changed."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from artconv import batch, registry
from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe
from artconv.presets import options_for, read_preset
from artconv.progress import Progress
from tests.batch.fake_engine import InvertEngine, InvertOptions
from tests.conftest import make_image


@pytest.fixture
def invert(monkeypatch):
    spec = registry.EngineSpec("invert", InvertOptions, "tests.batch.fake_engine:InvertEngine",
                               "artconv.io.writers:write_picture", "{content}_inv.png")
    monkeypatch.setitem(registry.ENGINES, "invert", spec)
    InvertEngine.built.clear()
    return spec


def test_a_registered_engine_runs_in_batches(tmp_path, invert, backbone_file):
    images = [make_image(tmp_path / "in" / f"p{i}.png", (40, 32), seed=i) for i in range(3)]
    images.append(make_image(tmp_path / "in" / "wide.png", (64, 32), seed=5))
    jobs = batch.plan("invert", images, out_dir=tmp_path / "out")
    assert [j.output for j in jobs] == [str(tmp_path / "out" / f"{p.stem}_inv.png")
                                        for p in images]
    steps = []
    progress = Progress(quiet=True)
    progress.on_step = steps.append
    runner = batch.LocalRunner()
    opts = InvertOptions(backbone=f"{backbone_file}:build", size=20)
    report = batch.render(jobs, {"invert": opts}, batch_size=2, runner=runner,
                          progress=progress)
    assert report.count("done") == 4 and report.ok, report.to_dict()
    (engine,) = InvertEngine.built  # one engine for the one set of options
    assert sorted(engine.batches) == [1, 1, 2]  # 3 same-sized inputs by 2, the wide one alone
    assert runner.stats["networks_loaded"] == 1 and engine.extractor is not None
    assert len(steps) == 3 * 2 and {s.engine for s in steps} == {"invert"}
    for job in jobs:
        out = load_image(job.output)
        assert max(out.shape[-2:]) == 20  # loaded at the engine's `size`
        assert torch.allclose(out, 1 - load_image(job.input, 20), atol=1 / 255)
        recipe = read_recipe(job.output)
        assert recipe["engine"] == "invert" and recipe["inputs"] == [job.input]


def test_a_registered_engine_in_manifests_and_presets(tmp_path, invert):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "invert", "input": "a.png",
                                    "options": {"steps": 3}}) + "\n")
    (job,) = batch.read_manifest(manifest)
    assert job.engine == "invert" and job.output == str(tmp_path / "a_inv.png")
    manifest.write_text(json.dumps({"engine": "invert", "input": "a.png",
                                    "options": {"steps": 0}}) + "\n")
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:1: option 'steps': 0: must be at"):
        batch.read_manifest(manifest)
    preset = tmp_path / "strong.toml"
    preset.write_text('engine = "invert"\n[options]\nsteps = 5\n')
    assert read_preset(preset).engine == "invert"
    assert options_for("invert", read_preset(preset), {"size": 8}) == InvertOptions(
        steps=5, size=8)


def test_an_engine_takes_clips_when_its_registry_entry_says_so(tmp_path, monkeypatch,
                                                               backbone_file):
    # Which engines take clips is the registry's `clip_frames_path`, not a list of names.
    from artconv.video.io import read_frames
    from tests.video.clips import frames, write_clip

    clip = write_clip(tmp_path / "walk.mp4", frames(3, (32, 40)), fps=8, audio=False)
    job = batch.Job("invert", str(clip), str(tmp_path / "inv") + "/")
    spec = registry.EngineSpec("invert", InvertOptions, "tests.batch.fake_engine:InvertEngine",
                               "artconv.io.writers:write_picture", "{content}_inv.png")
    monkeypatch.setitem(registry.ENGINES, "invert", spec)
    opts = InvertOptions(steps=1, backbone=f"{backbone_file}:build")
    report = batch.render([job], {"invert": opts})
    assert report.count("failed") == 1
    reason = report.results[0].reason
    assert "clips run with the style, dream and fast engines, not invert" in reason

    monkeypatch.setitem(registry.ENGINES, "invert", dataclasses.replace(
        spec, clip_frames_path="tests.batch.fake_engine:InvertFrames"))
    assert registry.clip_engines() == ("style", "dream", "fast", "invert")
    report = batch.render([job], {"invert": opts})
    assert report.count("done") == 1, report.to_dict()
    made = sorted((tmp_path / "inv").glob("frame_*.png"))
    assert len(made) == 3
    for path, original in zip(made, read_frames(clip), strict=True):
        want = 1 - torch.from_numpy(original).permute(2, 0, 1).float() / 255
        assert torch.allclose(load_image(path), want, atol=1 / 255)
