"""Training as a studio job (issue 23): `artconv train` started through the API on the
studio's queue, its preview sheet and loss curve served as they grow, Stop keeping the
checkpoint, the same form queued again resuming from it, and the model listed by live mode.
Tiny: 32 px crops, a width-4 network with one block, the tests' own loss network."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image

from artconv.fast.checkpoint import work_folder
from tests.conftest import make_image
from tests.web.conftest import tiny_defaults
from tests.web.test_api import upload, wait_for

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")


def train_defaults(backbone: Path) -> dict:
    return {**tiny_defaults(backbone), "train": {
        "backbone": f"{backbone}:build", "content_layers": ["r2"],
        "style_layers": ["r1", "r2"], "precision": "fp32", "device": "cpu", "crop": 32,
        "width": 4, "blocks": 1, "batch_size": 2, "holdout": 2, "checkpoint_every": 2}}


@pytest.fixture
def client(studio_folder, backbone_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    for i in range(8):  # the operator's photo folder
        make_image(studio_folder / "photos" / "set" / f"p{i}.png", (48, 40), seed=i)
    studio = Studio(studio_folder, defaults=train_defaults(backbone_file))
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as client:
        yield client


def form(style: str, steps: int, **options) -> dict:
    return {"engine": "train", "name": "mine", "styles": [style], "photos": "set",
            "options": {"steps": steps, **options}}


def png(client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def test_a_training_job_shows_its_sheet_and_curve_and_its_model_goes_to_live_mode(
        client, studio_folder, tmp_path):
    info = client.get("/api/info").json()["train"]
    assert info["photo_folders"] == ["", "set"]
    fields = {f["name"]: f for f in info["fields"]}
    assert fields["steps"]["main"] and "device" not in fields and "backbone" not in fields
    style = upload(client, make_image(tmp_path / "paint.png", (40, 40), seed=3))
    job = client.post("/api/jobs", json=form(style, 4, preview_every=2)).json()
    assert job["status"] in ("queued", "running") and job["train"]["model"] == "mine.safetensors"
    state = wait_for(client, job["id"], lambda s: s["status"] not in ("queued", "running"), 120)
    assert state["status"] == "done", state
    assert [p[0] for p in state["curve"]["points"]] == [1, 2, 3, 4]  # one loss a step
    sheet = png(client, state["train"]["sheet"])
    assert png(client, state["train"]["curve"]).size[0] > 100
    assert sheet.size[1] >= 2 * 32  # a row per preview (steps 2 and 4)
    models = client.get("/api/live/models").json()
    assert "mine.safetensors" in [m["id"] for m in models]
    assert (studio_folder / "models" / "mine.safetensors").is_file()
    assert not list((studio_folder / "results").glob("*"))  # no gallery entry for a model


def test_stop_keeps_the_checkpoint_and_the_same_form_resumes_from_it(
        client, studio_folder, tmp_path):
    style = upload(client, make_image(tmp_path / "paint.png", (40, 40), seed=3))
    first = client.post("/api/jobs", json=form(style, 60)).json()
    wait_for(client, first["id"], lambda s: s["step"].get("done", 0) >= 3, 120)
    assert client.post("/api/jobs", json=form(style, 60)).status_code == 400  # one at a time
    client.post(f"/api/jobs/{first['id']}/stop")
    stopped = wait_for(client, first["id"], lambda s: s["status"] != "running", 60)
    reached = stopped["step"]["done"]
    assert stopped["status"] == "stopped" and reached < 60
    folder = work_folder(studio_folder / "models" / "mine.safetensors")
    assert (folder / "checkpoint.pt").is_file()
    assert (studio_folder / "models" / "mine.safetensors").is_file()  # the model so far

    again = client.post("/api/jobs", json=stopped["form"]).json()
    done = wait_for(client, again["id"], lambda s: s["status"] not in ("queued", "running"), 120)
    assert done["status"] == "done", done
    steps = [p[0] for p in done["curve"]["points"]]
    assert steps[0] == reached + 1 and steps[-1] == 60  # continued, not started over
    assert f"resuming mine.safetensors at step {reached} of 60" in \
        (folder / "train.log").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "../evil"}, "model name"),
    ({"photos": "../uploads"}, "not a folder under the studio's photos/"),
    ({"photos": "nope"}, "no such folder"),
    ({"styles": []}, "pick at least one style"),
    ({"options": {"device": "cuda"}}, "cannot be set from the page"),
    ({"options": {"backbone": "/etc/x.py:build"}}, "cannot be set from the page"),
    ({"options": {"crop": 2048}}, "at most 1024 from the page"),
    ({"options": {"steps": 0}}, "steps"),
])
def test_bad_training_forms_are_one_line_and_write_nothing(client, studio_folder, tmp_path,
                                                           change, message):
    style = upload(client, make_image(tmp_path / "paint.png", (40, 40), seed=3))
    response = client.post("/api/jobs", json={**form(style, 4), **change})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error
    time.sleep(0.2)
    assert not list(studio_folder.glob("models/*"))  # (live mode makes the folder)
    assert client.get("/api/jobs").json() == []


def test_a_killed_servers_training_job_is_queued_again_with_its_photos(studio_folder,
                                                                       backbone_file, tmp_path):
    from artconv.web.folder import StudioFolder
    from artconv.web.studio import Studio

    for i in range(3):
        make_image(studio_folder / "photos" / f"p{i}.png", (48, 40), seed=i)
    style = StudioFolder(studio_folder).add_upload(
        make_image(tmp_path / "paint.png", (40, 40), seed=3).read_bytes())["id"]
    first = Studio(studio_folder, defaults=train_defaults(backbone_file))  # never started
    job = first.submit({**form(style, 4), "photos": ""})
    again = Studio(studio_folder, defaults=train_defaults(backbone_file))
    assert again.resumed == 1
    back = again.job(job.id)
    assert back.status == "queued" and back.output == job.output
    assert back.photos == job.photos and len(back.photos) == 3
    assert back.job.options == {"steps": 4}


def test_training_uses_the_servers_network_unless_told_otherwise(tmp_path):
    from artconv.web.studio import Studio

    network = {"weights": "caffe", "arch": "vgg16"}  # what `artconv serve --weights --arch` gives
    studio = Studio(tmp_path / "studio", defaults={"style": network, "dream": network})
    assert (studio.defaults["train"].weights, studio.defaults["train"].arch) == ("caffe", "vgg16")


def test_uploaded_photos_train_too_and_bad_ids_are_one_line(client, tmp_path):
    style = upload(client, make_image(tmp_path / "paint.png", (40, 40), seed=3))
    photos = [upload(client, make_image(tmp_path / f"u{i}.png", (48, 40), seed=20 + i))
              for i in range(4)]
    bad = client.post("/api/jobs", json={**form(style, 2), "photos": [*photos, "../../etc"]})
    assert bad.status_code == 400 and "not an id" in bad.json()["error"]
    job = client.post("/api/jobs", json={**form(style, 2), "photos": photos}).json()
    state = wait_for(client, job["id"], lambda s: s["status"] not in ("queued", "running"), 120)
    assert state["status"] == "done" and state["form"]["photos"] == photos, state
