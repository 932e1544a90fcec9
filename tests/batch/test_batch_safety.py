"""Batches never lose a file (issue 15): --report and --sheet are checked before any work,
a batch re-runs beside its own outputs, an output without its recipe is redone, stale
temporaries are swept, and bad manifests or a Ctrl-C are reported on one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from artconv import batch
from artconv.cli import main
from artconv.errors import ArtconvError
from artconv.io.images import save_image
from tests.conftest import make_image, run_cli, style_grid

# The cheapest dream the CLI runs: a random VGG at 32 px, one octave, one step.
DREAM = ["--weights", "random", "--size", "32", "--octaves", "1", "--steps", "1",
         "--layers", "relu2_1", "--device", "cpu", "--precision", "fp32"]



def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    make_image(folder / "a.png", (40, 32), seed=1)
    make_image(folder / "b.png", (40, 32), seed=2)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- item 1: --report / --sheet checked before any work ---------------------------------------
@pytest.mark.parametrize("option, target, words", [
    ("--report", "photos/a.png", "is an input file"),           # a content image
    ("--report", "starry.png", "is an input file"),             # a style image
    ("--sheet", "photos/b.png", "is an input file"),            # the sheet over an input
    ("--report", "out/a_starry.png", "is the output of job a.png x starry"),
    ("--sheet", "out/b_starry.png", "is the output of job b.png x starry"),
])
def test_report_and_sheet_refused_over_inputs_and_outputs(tmp_path, photos, capsys,
                                                          monkeypatch, option, target, words):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "starry.png", (32, 32), seed=3)
    before = _snapshot(tmp_path)
    code, _, err = run_cli(["batch", "style", "photos", "--styles", "starry.png",
                            "--out-dir", "out", option, target, *DREAM[:4],
                            "--iterations", "1", "-q"], capsys)
    line = _one_line_error(err)
    assert code == 2
    assert f"{option} {target}: {words}" in line and "choose another -o" not in line
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed
    assert not (tmp_path / "out").exists()


def test_report_over_an_outputs_recipe_or_the_sheet_is_refused(tmp_path, photos, capsys):
    out = tmp_path / "out"
    args = ["batch", "dream", str(photos), "--out-dir", str(out), "--template",
            "{content}_dream.jpg", *DREAM, "-q"]
    code, _, err = run_cli([*args, "--report", str(out / "a_dream.jpg.json")], capsys)
    assert code == 2 and "is the recipe of job a.png" in _one_line_error(err)
    same = str(tmp_path / "both.png")
    code, _, err = run_cli([*args, "--report", same, "--sheet", same], capsys)
    assert code == 2
    assert "--report" in err and "name the same file" in _one_line_error(err)
    assert not out.exists() and not Path(same).exists()


def test_report_over_the_manifest_is_refused(tmp_path, photos, capsys):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "dream", "input": "photos/a.png",
                                    "output": "out/a.png"}) + "\n")
    text = manifest.read_text()
    code, _, err = run_cli(["batch", "run", str(manifest), "--report", str(manifest), "-q"],
                           capsys)
    assert code == 2 and f"--report {manifest}: is an input file" in _one_line_error(err)
    assert manifest.read_text() == text and not (tmp_path / "out").exists()


def test_report_in_a_file_where_a_folder_should_be_is_refused(tmp_path, photos, capsys):
    (tmp_path / "plain").write_text("a file, not a folder")
    report = tmp_path / "plain" / "run.json"
    code, _, err = run_cli(["batch", "dream", str(photos), "--out-dir", str(tmp_path / "out"),
                            "--report", str(report), *DREAM, "-q"], capsys)
    assert code == 2 and f"--report {report}: " in _one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_folder_fails_before_any_job(tmp_path, photos):
    (tmp_path / "plain").write_text("a file where --out-dir should be")
    ran: list[int] = []

    class Spy(batch.LocalRunner):
        def run(self, jobs, options, **kw):
            ran.append(len(jobs))
            return super().run(jobs, options, **kw)

    jobs = batch.plan("dream", photos, out_dir=tmp_path / "plain")
    with pytest.raises(ArtconvError, match=r"output .*plain/a_dream.png: .*plain is not a "
                                           r"folder"):
        batch.render(jobs, runner=Spy())
    assert ran == []


# -- item 2: a batch beside its inputs re-runs ------------------------------------------------
def test_batch_beside_its_inputs_reruns_and_skips_its_outputs(photos, capsys):
    args = ["batch", "dream", str(photos), *DREAM, "--json", "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads(out)["done"] == 2
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 2, 0)
    assert sorted(p.name for p in photos.iterdir()) == [
        "a.png", "a_dream.png", "b.png", "b_dream.png"]


def test_style_outputs_beside_inputs_are_not_inputs(tmp_path, photos):
    style = make_image(tmp_path / "starry.png", (32, 32))
    for name in ("a_starry.png", "old_starry.png"):  # old_starry: its content is gone
        save_image(Image.open(make_image(tmp_path / "x.png")), photos / name,
                   recipe={"engine": "style"})
    jobs = batch.plan("style", photos, styles=[style])
    assert sorted(Path(j.input).name for j in jobs) == ["a.png", "b.png"]
    # an image named on its own is an input whatever its name
    (job,) = batch.plan("style", [photos / "a_starry.png"], styles=[style])
    assert Path(job.output).name == "a_starry_starry.png"
    for name in ("a.png", "b.png"):
        (photos / name).unlink()
    with pytest.raises(ArtconvError, match=r"photos: holds only outputs of an earlier style "
                                           r"batch \(e.g. a_starry.png\)"):
        batch.plan("style", photos, styles=[style])


def test_a_users_file_named_like_an_output_is_still_protected(photos):
    # no artconv recipe: the user's own picture, which the job for a.png would overwrite
    make_image(photos / "a_dream.png", seed=9)
    with pytest.raises(ArtconvError, match=r"a_dream.png: job a.png would write its output "
                                           r"over the input .*a_dream.png"):
        batch.plan("dream", photos)


# -- item 3: an output without its recipe is unfinished ---------------------------------------
def test_output_without_its_recipe_is_refused_and_overwrite_redoes_it(tmp_path, photos,
                                                                     backbone_file):
    # The writers put the sidecar first, so an output without one is not artconv's (issue
    # 25.3): refused, naming the file, not overwritten; --overwrite redoes it.
    from artconv.deepdream.engine import DreamOptions

    opts = DreamOptions(backbone=f"{backbone_file}:build", layers=("r3",), steps=1, octaves=1)
    jobs = batch.plan("dream", photos, out_dir=tmp_path / "out", template="{content}.jpg")
    assert batch.render(jobs, {"dream": opts}).count("done") == 2
    (tmp_path / "out" / "a.jpg.json").unlink()
    before = (tmp_path / "out" / "a.jpg").read_bytes()
    with pytest.raises(ArtconvError, match=r"a\.jpg: exists and is not an artconv output"):
        batch.render(jobs, {"dream": opts})
    assert (tmp_path / "out" / "a.jpg").read_bytes() == before
    again = batch.render(jobs, {"dream": opts}, overwrite=True)
    assert [r.status for r in again.results] == ["done", "done"]
    assert (tmp_path / "out" / "a.jpg.json").is_file()


# -- item 4: stale temporaries are swept ------------------------------------------------------
def test_stale_temporaries_of_the_outputs_are_swept_before_the_run(tmp_path, photos,
                                                                   backbone_file):
    from artconv.deepdream.engine import DreamOptions

    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".a_dream.png.k2j4h5g6.png.tmp", out / ".b_dream.png.json.x8y7z6w5.tmp"]
    foreign = out / ".other.png.abcdefgh.png.tmp"  # no output of this batch
    for path in [*stale, foreign]:
        path.write_bytes(b"left by a killed writer")
    seen: list[bool] = []

    class Spy(batch.LocalRunner):
        def run(self, jobs, options, **kw):
            seen.append(any(p.exists() for p in stale))
            return super().run(jobs, options, **kw)

    opts = DreamOptions(backbone=f"{backbone_file}:build", layers=("r3",), steps=1, octaves=1)
    report = batch.render(batch.plan("dream", photos, out_dir=out), {"dream": opts},
                          runner=Spy())
    assert report.ok and seen == [False]  # gone before any job ran
    assert not any(p.exists() for p in stale) and foreign.exists()
    assert report.stats["temp_files_swept"] == 2


# -- item 9: a manifest that is no text -------------------------------------------------------
def test_manifest_that_is_not_text_is_one_line(tmp_path, capsys):
    image = make_image(tmp_path / "jobs.png")
    code, _, err = run_cli(["batch", "run", str(image)], capsys)
    assert code == 2 and f"{image}: not a text file" in _one_line_error(err)
    manifest = tmp_path / "jobs.jsonl"
    data = b'{"engine": "dream", "input": "a.png"}\n{"input": "caf\xff.png"}\n'
    manifest.write_bytes(data)
    code, _, err = run_cli(["batch", "run", str(manifest)], capsys)
    assert code == 2
    assert f"{manifest}:2: not UTF-8 at byte {data.index(0xff)}" in _one_line_error(err)


# -- item 15: messages ------------------------------------------------------------------------
def test_manifest_option_values_name_the_file_and_line(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    line = {"engine": "dream", "input": "a.png", "output": "a_out.png"}
    manifest.write_text(json.dumps(line) + "\n" +
                        json.dumps({**line, "options": {"size": 0}}) + "\n")
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:2: option 'size': 0: must be at least"):
        batch.read_manifest(manifest)
    manifest.write_text(json.dumps({**line, "options": {"avg_rescale": True}}) + "\n")
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:1: option 'avg_rescale': only "
                                           r"applies to --pooling avg"):
        batch.read_manifest(manifest)


def test_manifest_option_clashing_with_the_preset_names_the_line(tmp_path, capsys):
    preset = tmp_path / "smooth.toml"
    preset.write_text('engine = "dream"\n[options]\npooling = "avg"\navg_rescale = true\n')
    manifest = tmp_path / "jobs.jsonl"
    line = {"engine": "dream", "input": "a.png", "output": "o.png"}
    # fine alone, but max pooling under the preset's avg_rescale is not
    manifest.write_text(json.dumps(line) + "\n" + json.dumps(
        {**line, "output": "p.png", "options": {"pooling": "max"}}) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "--preset", str(preset)], capsys)
    assert code == 2
    assert (f"{manifest}:2: option 'avg_rescale': only applies to --pooling avg"
            in _one_line_error(err))


def test_a_manifest_job_over_its_input_names_the_line(tmp_path, capsys):
    make_image(tmp_path / "a.png")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("# a comment\n" + json.dumps(
        {"engine": "dream", "input": "a.png", "output": "a.png"}) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest)], capsys)
    line = _one_line_error(err)
    assert code == 2 and "jobs.jsonl:2" in line and "'output'" in line
    assert "choose another -o" not in line


def test_the_job_running_at_ctrl_c_is_reported_as_such(tmp_path, backbone_file):
    contents, styles, opts = style_grid(tmp_path, backbone_file, contents=3, styles=1)
    calls: list[int] = []

    class CtrlCInSecond(batch.LocalRunner):
        def _run_chunk(self, *args, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super()._run_chunk(*args, **kw)

    jobs = batch.plan("style", contents, styles=styles, out_dir=tmp_path / "out")
    report = batch.render(jobs, {"style": opts.replace(iterations=(1,))},
                          runner=CtrlCInSecond())
    assert report.interrupted
    assert [(r.status, r.reason) for r in report.results] == [
        ("done", ""), ("interrupted", "interrupted while running"),
        ("interrupted", "Ctrl-C before it ran")]


def test_report_on_the_output_folder_a_batch_will_create_is_refused(tmp_path, backbone_file):
    """Found by the sweep: --report naming --out-dir (not yet made) failed after the work."""
    content, _, _ = style_grid(tmp_path, backbone_file, contents=1, styles=1)
    out = tmp_path / "made_by_batch"
    with pytest.raises(SystemExit) as done:
        main(["batch", "dream", str(content[0]), "--out-dir", str(out), "--report", str(out),
              "--backbone", f"{backbone_file}:build", "--layers", "r3", "--quiet"])
    assert done.value.code == 2
    assert not out.exists()


def test_a_job_output_over_a_guide_image_is_refused(tmp_path, backbone_file, capsys):
    """Found by the sweep: only weights and backbone files counted as option inputs."""
    content = make_image(tmp_path / "a.png", (32, 32))
    guide = make_image(tmp_path / "out" / "a_dream.png", (32, 32), seed=5)
    before = guide.read_bytes()
    code, _, err = run_cli(["batch", "dream", str(content), "--out-dir", str(tmp_path / "out"),
                            "--guide", str(guide), "--backbone", f"{backbone_file}:build",
                            "--layers", "r3", "--quiet"], capsys)
    assert code == 2 and "a_dream.png" in err
    assert guide.read_bytes() == before


# -- round 3 (issues 25.3, 20.7): outputs artconv did not make, work folders -----------------
def test_a_manifest_output_artconv_did_not_make_is_refused_not_skipped(tmp_path, photos,
                                                                       backbone_file, capsys):
    notes = tmp_path / "notes.png"
    make_image(notes, (20, 20), seed=9)  # the user's own picture: no recipe inside
    before = notes.read_bytes()
    options = {"backbone": f"{backbone_file}:build", "layers": ["r3"], "steps": 1,
               "octaves": 1}
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "dream", "input": "photos/a.png",
                                    "output": "notes.png", "options": options}) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 2 and "notes.png: exists and is not an artconv output" in err, err
    assert len(err.strip().splitlines()) == 1
    assert notes.read_bytes() == before

    # an output of another job (here: of the other photo) is no more this job's
    made = tmp_path / "made.png"
    other = batch.Job("dream", str(photos / "b.png"), str(made), options=options)
    assert batch.render([other]).count("done") == 1
    manifest.write_text(json.dumps({"engine": "dream", "input": "photos/a.png",
                                    "output": "made.png", "options": options}) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 2 and "made.png: was made by another job (dream of" in err, err

    # this job's own finished output is skipped, as before
    manifest.write_text(json.dumps({"engine": "dream", "input": "photos/b.png",
                                    "output": "made.png", "options": options}) + "\n")
    code, out, err = run_cli(["batch", "run", str(manifest), "--json"], capsys)
    assert code == 0 and json.loads(out)["skipped"] == 1, err


def test_nothing_is_written_into_a_clip_work_folder(tmp_path, backbone_file, capsys):
    from tests.video.clips import frames, write_clip

    write_clip(tmp_path / "walk.mp4", frames(2, (32, 40)), fps=8, audio=False)
    make_image(tmp_path / "a.png", (40, 32))
    net = {"backbone": f"{backbone_file}:build", "layers": ["r3"], "steps": 1, "octaves": 1}
    clip_job = {"engine": "dream", "input": "walk.mp4", "output": "walk_dream.mp4",
                "options": net}
    manifest = tmp_path / "jobs.jsonl"
    # a work folder this batch will make: the report and another job's output stay out
    manifest.write_text(json.dumps(clip_job) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q", "--report",
                            str(tmp_path / "walk_dream.mp4.frames" / "clip.json")], capsys)
    assert code == 2 and "--report" in err and "is inside the work folder" in err, err
    still = {"engine": "dream", "input": "a.png", "options": net,
             "output": "walk_dream.mp4.frames/frame_000001.png"}
    manifest.write_text(json.dumps(clip_job) + "\n" + json.dumps(still) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 2 and "is inside the work folder" in err, err
    assert not (tmp_path / "walk_dream.mp4.frames").exists()

    # an existing work folder (it holds clip.json): the same
    manifest.write_text(json.dumps(clip_job) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 0, err
    kept = _snapshot(tmp_path / "walk_dream.mp4.frames")
    for at in ["clip.json", "frame_000001.png"]:
        code, _, err = run_cli(["batch", "run", str(manifest), "-q", "--report",
                                str(tmp_path / "walk_dream.mp4.frames" / at)], capsys)
        assert code == 2 and "is inside the work folder" in err, err
    manifest.write_text(json.dumps(still) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 2 and "is inside the work folder" in err, err
    assert _snapshot(tmp_path / "walk_dream.mp4.frames") == kept
