"""The studio's HTTP API through FastAPI's TestClient: uploads, jobs, events, Stop, the
gallery, recipes, sweeps, and the safety rules (token, hosts, paths, options)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time

import pytest
from PIL import Image

from artconv import registry
from artconv.io.images import read_recipe
from artconv.style.options import StyleOptions
from artconv.web.forms import BLOCKED, SERVER_FIELDS
from tests.conftest import make_image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")


def upload(client, path) -> str:
    response = client.post("/api/uploads", content=path.read_bytes())
    assert response.status_code == 200, response.text
    return response.json()["id"]


def inputs(client, tmp_path) -> tuple[str, str]:
    content = make_image(tmp_path / "photo.png", (48, 40))
    style = make_image(tmp_path / "paint.png", (40, 40), seed=3)
    return upload(client, content), upload(client, style)


def events(client, jid: str) -> list[dict]:
    """Every state the job's event stream sent, until its end event."""
    with client.stream("GET", f"/api/jobs/{jid}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = list(stream.iter_lines())
    assert "event: end" in lines
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {\"")]


def wait_for(client, jid: str, test, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{jid}").json()
        if test(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {jid} never got there: {state}")


def test_page_and_form_fields_come_from_the_option_record(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and "artconv studio" in page.text
    assert client.get("/static/studio.js").status_code == 200
    info = client.get("/api/info").json()
    assert set(info["engines"]) == set(registry.names())  # fast (trained networks) too
    fast = {f["name"]: f for f in info["engines"]["fast"]["fields"]}
    # a trained network by name only: a page cannot name a file on the server
    assert fast["model"]["main"] and {"candy", "mosaic"} <= set(fast["model"]["choices"])
    style = {f["name"]: f for f in info["engines"]["style"]["fields"]}
    cli_fields = {f.name for f in dataclasses.fields(StyleOptions) if f.metadata.get("cli", True)}
    assert set(style) == cli_fields - BLOCKED - set(SERVER_FIELDS)
    assert style["style_weight"]["main"] and style["style_weight"]["kind"] == "float"
    assert style["pooling"]["choices"] == ["max", "avg", "strided", "none"]
    assert style["iterations"]["kind"] == "list" and style["iterations"]["default"] == [3]
    assert style["size"]["default"] == 32 and style["size"]["min"] == 16  # studio defaults
    assert info["network"]["style"] == {"weights": "imagenet", "arch": "vgg19",
                                       "backbone": "mynet.py"}  # the server's
    # Offline (the tests' cache is empty): URL presets are listed, marked unavailable.
    starry = next(p for p in info["presets"] if p["name"] == "starry")
    assert starry["style"] and not starry["available"]


def test_uploads_are_named_by_the_server_and_checked(make_client, tmp_path, monkeypatch):
    client = make_client(max_upload=20_000)
    # The body is the picture alone: no browser file name can reach the disk.
    uid = upload(client, make_image(tmp_path / "evil name.png"))
    stored = list((tmp_path / "studio" / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{uid}.png"]
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(jpeg, "JPEG")
    made = client.post("/api/uploads", content=jpeg.getvalue()).json()
    assert made["url"].endswith(".jpg") and (made["width"], made["height"]) == (20, 10)
    bad = client.post("/api/uploads", content=b"<svg>not a picture</svg>")
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]
    big = client.post("/api/uploads", content=os.urandom(30_000))
    assert big.status_code == 413
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "100")
    limited = client.post("/api/uploads", content=(tmp_path / "evil name.png").read_bytes())
    assert limited.status_code == 400 and "pixels" in limited.json()["error"]
    assert not [p for p in stored[0].parent.iterdir() if p.name.startswith(".")]


def test_style_job_streams_events_and_lands_in_the_gallery(make_client, tmp_path):
    client = make_client()
    content, style = inputs(client, tmp_path)
    started = client.post("/api/jobs", json={"engine": "style", "content": content,
                                             "styles": [style],
                                             "options": {"style_weight": "1e4", "seed": "2"}})
    assert started.status_code == 200, started.text
    jid = started.json()["id"]
    states = events(client, jid)
    final = states[-1]
    assert final["status"] == "done" and final["step"]["done"] == final["step"]["total"] == 3
    assert final["curve"]["name"] == "loss" and len(final["curve"]["points"]) == 3
    assert final["preview"] >= 1
    preview = client.get(f"/api/jobs/{jid}/preview")
    assert preview.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(preview.content)).size == (32, 27)

    (entry,) = client.get("/api/gallery").json()
    assert entry["id"] == jid and entry["status"] == "done" and entry["engine"] == "style"
    assert entry["form"]["options"] == {"style_weight": "1e4", "seed": "2"}
    assert entry["inputs"]["content"].startswith("/files/uploads/")
    recipe = client.get(f"/api/results/{jid}/recipe").json()
    assert recipe["engine"] == "style" and recipe["options"]["style_weight"] == 1e4
    assert recipe["options"]["seed"] == 2 and recipe["options"]["size"] == 32
    download = client.get(entry["download"])
    assert download.headers["content-disposition"].startswith("attachment")
    saved = tmp_path / "download.png"
    saved.write_bytes(download.content)
    assert read_recipe(saved) == recipe  # the file carries its recipe
    assert Image.open(saved).size == (32, 27)


def test_stop_keeps_the_image_so_far(make_client, tmp_path):
    client = make_client(optimizer="adam", iterations=[100_000])
    content, style = inputs(client, tmp_path)
    jid = client.post("/api/jobs", json={"engine": "style", "content": content,
                                         "styles": [style]}).json()["id"]
    running = wait_for(client, jid, lambda s: s["step"].get("done", 0) >= 5)
    assert running["status"] == "running" and running["eta"] is not None
    client.post(f"/api/jobs/{jid}/stop")
    final = wait_for(client, jid, lambda s: s["status"] not in ("queued", "running"))
    assert final["status"] == "stopped" and final["result"] == f"{jid}.png"
    assert final["step"]["done"] < 100_000
    (entry,) = client.get("/api/gallery").json()
    assert entry["status"] == "stopped"
    assert client.get(f"/api/results/{jid}/recipe").json()["engine"] == "style"


def test_jobs_queue_one_at_a_time_on_one_network(make_client, tmp_path):
    client = make_client(optimizer="adam", iterations=[100_000])
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    first = client.post("/api/jobs", json=form).json()["id"]
    second = client.post("/api/jobs", json={**form, "options": {"seed": "1"}}).json()["id"]
    third = client.post("/api/jobs", json={**form, "options": {"iterations": "2"}}).json()["id"]
    wait_for(client, first, lambda s: s["status"] == "running")
    queued = client.get(f"/api/jobs/{second}").json()
    assert queued["status"] == "queued" and queued["position"] == 1
    assert client.post(f"/api/jobs/{second}/stop").json()["status"] == "cancelled"
    client.post(f"/api/jobs/{first}/stop")
    assert events(client, third)[-1]["status"] == "done"
    statuses = {j["id"]: j["status"] for j in client.get("/api/jobs").json()}
    assert statuses == {first: "stopped", second: "cancelled", third: "done"}
    assert not (tmp_path / "studio" / "results" / f"{second}.png").exists()
    runner = client.app.state.studio.runner
    assert runner.stats["networks_loaded"] == 1  # three jobs, one network kept loaded


@pytest.mark.parametrize("engine", ["dream", "features"])
def test_dream_and_features_make_pictures(make_client, tmp_path, engine):
    client = make_client()
    content, _ = inputs(client, tmp_path)
    jid = client.post("/api/jobs", json={"engine": engine, "content": content}).json()["id"]
    final = events(client, jid)[-1]
    assert final["status"] == "done", final["error"]
    assert final["preview"] >= (1 if engine == "dream" else 0)  # features: no picture to show
    (entry,) = client.get("/api/gallery").json()
    assert entry["engine"] == engine
    image = Image.open(tmp_path / "studio" / "results" / f"{jid}.png")
    assert image.size == (32, 27)
    recipe = client.get(f"/api/results/{jid}/recipe").json()
    assert recipe["engine"] == engine
    if engine == "features":
        assert "pca" in recipe  # a PCA picture of the features, with their recipe


@pytest.mark.parametrize(("options", "message"), [
    ({"backbone": "/tmp/evil.py:build"}, "cannot be set from the page"),
    ({"init": "/etc/passwd"}, "choose one of"),
    ({"weights": "/tmp/weights.pth"}, "only the server chooses the network"),
    ({"no_such": 1}, "not an option"),
    ({"size": "4"}, "--size 4: must be at least 16"),
    ({"pooling": "median"}, "--pooling 'median'"),
])
def test_bad_options_are_refused_before_queueing(make_client, tmp_path, options, message):
    client = make_client()
    content, style = inputs(client, tmp_path)
    response = client.post("/api/jobs", json={"engine": "style", "content": content,
                                              "styles": [style], "options": options})
    assert response.status_code == 400 and message in response.json()["error"]
    assert client.get("/api/jobs").json() == []


def test_inputs_are_ids_of_this_studio(make_client, tmp_path):
    client = make_client()
    content, style = inputs(client, tmp_path)
    cases = [
        ({"content": "../../etc/passwd", "styles": [style]}, "not an id"),
        ({"content": "0123456789abcdef", "styles": [style]}, "no such image"),
        ({"content": content, "styles": []}, "at least one style"),
        ({"content": content, "styles": ["starry"]}, "not on this machine"),
        ({"content": content, "styles": ["/etc/passwd"]}, "no such preset"),
        ({"content": content, "styles": [style], "preset": "dream-deep"}, "is for dream"),
        ({"content": content, "styles": [style], "engine": "video"}, "unknown engine"),
    ]
    for form, message in cases:
        response = client.post("/api/jobs", json={"engine": "style", **form})
        assert response.status_code == 400 and message in response.json()["error"], form


def test_only_files_in_the_studio_folder_are_served(make_client, tmp_path):
    client = make_client()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    results = tmp_path / "studio" / "results"
    (results / "link.txt").symlink_to(outside)
    (results / ".hidden.png").write_bytes(b"x")
    for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt",
                 "/files/results/link.txt", "/files/results/.hidden.png",
                 f"/files/{outside}", "/files/results", "/files/"):
        assert client.get(path).status_code == 404, path
    content, _ = inputs(client, tmp_path)
    assert client.get(f"/files/uploads/{content}.png").status_code == 200


def test_sweep_makes_a_contact_sheet(make_client, tmp_path):
    client = make_client()
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    few = client.post("/api/sweeps", json={"form": form, "option": "style_weight",
                                           "values": ["1", "2"]})
    assert few.status_code == 400 and "3 to 8 values" in few.json()["error"]
    bad = client.post("/api/sweeps", json={"form": form, "option": "pooling",
                                           "values": ["max", "avg", "median"]})
    assert bad.status_code == 400 and client.get("/api/jobs").json() == []
    sweep = client.post("/api/sweeps", json={"form": form, "option": "pooling",
                                             "values": ["max", "avg", "strided"]}).json()
    assert len(sweep["jobs"]) == 3
    deadline = time.monotonic() + 30
    while not (done := client.get(f"/api/sweeps/{sweep['id']}").json())["finished"]:
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert [j["status"] for j in done["jobs"]] == ["done"] * 3
    assert [j["label"] for j in done["jobs"]] == [f"pooling = {v}" for v in ("max", "avg",
                                                                               "strided")]
    sheet = client.get(done["sheet"])
    picture = Image.open(io.BytesIO(sheet.content))
    assert picture.width > 4 * 160  # the content and three results side by side
    assert picture.height < 2 * 160  # one row, under a band of the values
    assert done["sheet"].endswith("?v=3")  # drawn again as each job ended
    assert sorted(p.name for p in (tmp_path / "studio" / "sweeps").iterdir()) == [
        f"{sweep['id']}.png"]  # no scratch file left
    recipes = [client.get(f"/api/results/{j['id']}/recipe").json() for j in done["jobs"]]
    assert [r["options"]["pooling"] for r in recipes] == ["max", "avg", "strided"]


def test_token_guards_every_request(make_client):
    client = make_client(token="s3cret-token")
    for path in ("/", "/api/info", "/static/studio.js", "/api/gallery", "/files/uploads/x"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/uploads", content=b"x").status_code == 401
    assert client.get("/", headers={"X-Artconv-Token": "wrong-token"}).status_code == 401
    assert client.get("/api/info", headers={"X-Artconv-Token": "s3cret-token"}).status_code \
        == 200
    assert client.get("/api/info", headers={"Authorization": "Bearer s3cret-token"}) \
        .status_code == 200
    first = client.get("/?token=s3cret-token")
    assert first.status_code == 200 and "artconv_token" in first.headers["set-cookie"]
    assert "samesite=strict" in first.headers["set-cookie"].lower()
    assert client.get("/api/info").status_code == 200  # the cookie from the first load


def test_foreign_hosts_and_cross_site_writes_are_refused(make_client, tmp_path):
    client = make_client()
    foreign = client.get("/", headers={"Host": "evil.example"})  # Starlette's TrustedHost
    assert foreign.status_code == 400 and foreign.text == "Invalid host header"
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    png = make_image(tmp_path / "a.png").read_bytes()
    cross = client.post("/api/uploads", content=png, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    same = client.post("/api/uploads", content=png, headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200


def test_a_local_style_preset_shows_and_runs(make_client, tmp_path, monkeypatch):
    styles = tmp_path / "my-styles"
    make_image(styles / "swirl.png", (40, 40), seed=9)
    (styles / "swirl.toml").write_text('description = "a generated swirl"\nengine = "style"\n'
                                       'images = ["swirl.png"]\n[options]\nstyle_scale = 0.5\n')
    monkeypatch.setenv("ARTCONV_STYLES", str(styles))
    client = make_client()
    swirl = next(p for p in client.get("/api/info").json()["presets"] if p["name"] == "swirl")
    assert swirl["available"] and swirl["style"]
    thumb = client.get("/api/presets/swirl/thumb")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert client.get("/api/presets/starry/thumb").status_code == 400  # offline: no picture
    content, _ = inputs(client, tmp_path)
    jid = client.post("/api/jobs", json={"engine": "style", "content": content,
                                         "styles": ["swirl"]}).json()["id"]
    assert events(client, jid)[-1]["status"] == "done"
    recipe = client.get(f"/api/results/{jid}/recipe").json()
    assert recipe["options"]["style_scale"] == 0.5  # the preset's options came with it


def test_the_gallery_outlives_the_server(make_client, tmp_path):
    client = make_client()
    content, style = inputs(client, tmp_path)
    jid = client.post("/api/jobs", json={"engine": "style", "content": content,
                                         "styles": [style]}).json()["id"]
    events(client, jid)
    client.__exit__(None, None, None)
    again = make_client()
    (entry,) = again.get("/api/gallery").json()
    assert entry["id"] == jid and entry["form"]["content"] == content
    rerun = again.post("/api/jobs", json=entry["form"])  # "run again with these settings"
    assert rerun.status_code == 200
    assert events(again, rerun.json()["id"])[-1]["status"] == "done"


def test_a_failing_job_reports_why_and_the_queue_goes_on(make_client, tmp_path):
    client = make_client()
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    bad = client.post("/api/jobs", json={**form, "options": {"style_layers": "relu9_9"}})
    good = client.post("/api/jobs", json=form)
    failed = events(client, bad.json()["id"])[-1]
    assert failed["status"] == "failed" and "relu9_9" in failed["error"]
    assert events(client, good.json()["id"])[-1]["status"] == "done"
    assert [e["id"] for e in client.get("/api/gallery").json()] == [good.json()["id"]]


def test_oversized_requests_are_refused(make_client):
    client = make_client()
    huge = json.dumps({"engine": "style", "options": {"seed": "1" * 2_000_000}})
    response = client.post("/api/jobs", content=huge,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_the_studio_runner_uses_only_public_seams_of_the_local_runner():
    from artconv.batch.local import LocalRunner
    from artconv.web.runner import StudioRunner

    overridden = [n for n in vars(StudioRunner) if n in vars(LocalRunner)
                  and n != "__init__" and n != "__doc__" and n != "__module__"]
    assert sorted(overridden) == ["build_engine", "run_job"]
    assert not [n for n in overridden if n.startswith("_")]


def test_queued_jobs_outlive_a_killed_server(make_client, studio_folder, backbone_file,
                                            tmp_path):
    """A server killed before its queue ran (no worker, no shutdown): the next one on the
    same folder runs the queue, ids, sweep and order kept."""
    from fastapi.testclient import TestClient

    from artconv.web.app import create_app
    from artconv.web.studio import Studio
    from tests.web.conftest import tiny_defaults

    killed = TestClient(create_app(Studio(studio_folder, defaults=tiny_defaults(
        backbone_file))), base_url="http://127.0.0.1")  # no lifespan: its worker never ran
    content, style = inputs(killed, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    first = killed.post("/api/jobs", json={**form, "options": {"seed": "4"}}).json()["id"]
    dropped = killed.post("/api/jobs", json=form).json()["id"]
    killed.post(f"/api/jobs/{dropped}/stop")  # cancelled: not to run again
    sweep = killed.post("/api/sweeps", json={"form": form, "option": "style_weight",
                                             "values": ["1", "10", "100"]}).json()
    saved = json.loads((studio_folder / "queue.json").read_text())
    assert [j["id"] for j in saved["jobs"]] == [first] + [j["id"] for j in sweep["jobs"]]

    client = make_client()
    assert events(client, first)[-1]["status"] == "done"
    deadline = time.monotonic() + 30
    while not (done := client.get(f"/api/sweeps/{sweep['id']}").json())["finished"]:
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert [j["status"] for j in done["jobs"]] == ["done"] * 3
    assert client.get(f"/api/results/{first}/recipe").json()["options"]["seed"] == 4
    assert {j["id"] for j in client.get("/api/jobs").json()} == {
        first, *(j["id"] for j in sweep["jobs"])}
    assert json.loads((studio_folder / "queue.json").read_text())["jobs"] == []


def test_a_queue_that_cannot_be_planned_again_fails_its_job_alone(make_client, studio_folder,
                                                                  tmp_path):
    client = make_client(optimizer="adam", iterations=[100_000])
    content, style = inputs(client, tmp_path)
    form = {"engine": "style", "content": content, "styles": [style]}
    running = client.post("/api/jobs", json=form).json()["id"]
    lost = client.post("/api/jobs", json={**form, "styles": [upload(
        client, make_image(tmp_path / "lost.png", seed=5))]}).json()["id"]
    wait_for(client, running, lambda s: s["status"] == "running")
    queue_file = studio_folder / "queue.json"
    saved = queue_file.read_text()  # as a kill at this moment would leave it
    client.__exit__(None, None, None)
    queue_file.write_text(saved)
    lost_upload = json.loads(saved)["jobs"][1]["form"]["styles"][0]
    for path in (studio_folder / "uploads").glob(f"{lost_upload}.*"):
        path.unlink()  # its style image deleted meanwhile
    again = make_client()
    assert events(again, lost)[-1]["error"].startswith(f"upload {lost_upload}: no such image")
    again.post(f"/api/jobs/{running}/stop")
    assert events(again, running)[-1]["status"] in ("stopped", "done")


def test_the_studio_needs_no_multipart_parser(tmp_path):
    """The web extra does not install python-multipart: an upload's body is the image
    itself. FastAPI refuses a File or Form route at import without the parser."""
    import subprocess
    import sys

    probe = ("import sys; sys.modules['multipart'] = sys.modules['python_multipart'] = None\n"
             "from artconv.web.app import create_app\n"
             "from artconv.web.studio import Studio\n"
             f"create_app(Studio({str(tmp_path / 'studio')!r}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
