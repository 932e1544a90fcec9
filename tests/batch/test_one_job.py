"""A single command is one job through the batch's local runner: the CLI and a batch make
the same output, and Ctrl-C keeps what a job has in both."""

from __future__ import annotations

import torch

from artconv import batch
from artconv.batch.local import SAVED
from artconv.deepdream.engine import DreamOptions
from artconv.io.images import load_image, read_recipe
from tests.conftest import make_image, run_cli, style_grid


def test_ctrl_c_in_a_batch_keeps_each_running_jobs_result(tmp_path, backbone_file):
    contents, styles, opts = style_grid(tmp_path, backbone_file, contents=2, styles=1)
    jobs = batch.plan("style", contents, styles=styles, out_dir=tmp_path / "out")
    options = {"style": opts.replace(iterations=(4,))}

    def ctrl_c_at_step_2(step):
        if step.done == 2:
            raise KeyboardInterrupt

    report = batch.render(jobs, options, runner=batch.LocalRunner(callback=ctrl_c_at_step_2),
                          batch_size=2)
    assert report.interrupted
    assert [(r.status, r.reason) for r in report.results] == [("interrupted", SAVED)] * 2
    for job in jobs:  # the picture so far, marked as cut short
        assert read_recipe(job.output)["interrupted"] is True
    so_far = [load_image(job.output) for job in jobs]
    again = batch.render(jobs, options)  # an interrupted output is redone, not skipped
    assert [r.status for r in again.results] == ["done", "done"]
    for job, partial in zip(jobs, so_far, strict=True):
        assert "interrupted" not in read_recipe(job.output)
        assert load_image(job.output).shape == partial.shape


def test_a_dream_from_the_cli_equals_the_same_job_in_a_batch(tmp_path, backbone_file, capsys):
    image = make_image(tmp_path / "photo.png", (40, 32))
    guide = make_image(tmp_path / "guide.png", (32, 32), seed=3)
    net = {"backbone": f"{backbone_file}:build", "layers": ("r3",), "steps": 2, "octaves": 1,
           "device": "cpu", "precision": "fp32"}
    code, _, err = run_cli(["dream", str(image), "-o", str(tmp_path / "cli.png"), "--guide",
                            str(guide), "--backbone", net["backbone"], "--layers", "r3",
                            "--steps", "2", "--octaves", "1", "--device", "cpu",
                            "--precision", "fp32", "-q"], capsys)
    assert code == 0, err
    jobs = [batch.Job("dream", str(image), str(tmp_path / "batch.png"))]
    report = batch.render(jobs, {"dream": DreamOptions(**net, guide=str(guide))})
    assert report.ok, report.to_dict()
    cli, ran = read_recipe(tmp_path / "cli.png"), read_recipe(tmp_path / "batch.png")
    assert cli["inputs"] == ran["inputs"] == [str(image), str(guide)]
    assert cli["options"] == ran["options"]
    assert torch.equal(load_image(tmp_path / "cli.png"), load_image(tmp_path / "batch.png"))
