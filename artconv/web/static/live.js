// artconv studio, live mode (issue 23; server side: artconv/web/live.py). A trained model
// styles a photo at once, and the camera's frames one after another: one frame in flight,
// the next one grabbed when its answer is back (the newest picture, never a queue). The
// blend slider mixes the model's picture with what it was made from, here in the page.
// Self-contained: it shares no names with studio.js.
(() => {
  "use strict";

  const q = (sel) => document.querySelector(sel);
  const live = {
    photoImg: null, styled: null, drawn: 0, camera: null, frames: 0, dropped: 0,
    times: [], last: null,
    client: Math.random().toString(36).slice(2, 12),
  };
  window.artconvLive = live;  // what tests read: last = {sent, got} of the newest frame

  function tell(text) { q("#live-message").textContent = text || ""; }

  async function call(path, options = {}) {
    const response = await fetch(path, options);
    if (!response.ok) {
      const text = await response.text();
      let message = text;
      try { message = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
      throw new Error(message || `${response.status}`);
    }
    return response;
  }

  const blend = () => Number(q("#live-blend").value);

  // The source under the model's picture, the picture at `blend` opacity on top.
  function paint(canvas, source, styled) {
    canvas.width = styled.width;
    canvas.height = styled.height;
    const ctx = canvas.getContext("2d");
    ctx.globalAlpha = 1;
    ctx.drawImage(source, 0, 0, styled.width, styled.height);
    ctx.globalAlpha = blend();
    ctx.drawImage(styled, 0, 0);
    ctx.globalAlpha = 1;
  }

  function drawPhoto() {
    if (!live.styled || !live.photoImg) return;
    const canvas = q("#live-result");
    paint(canvas, live.photoImg, live.styled);
    canvas.dataset.drawn = String(++live.drawn);
  }

  // -- models -------------------------------------------------------------------------------
  async function loadModels(pick) {
    const models = await (await call("/api/live/models")).json();
    const select = q("#live-model");
    const keep = pick || select.value;
    select.replaceChildren();
    if (!models.length) {
      select.append(new Option("(none: add one, or put files in the studio's models/)", ""));
    }
    for (const m of models) select.append(new Option(m.label, m.id));
    if (models.some((m) => m.id === keep)) select.value = keep;
  }

  async function addModel(file) {
    tell(`adding ${file.name}…`);
    try {
      const response = await call(`/api/live/models?name=${encodeURIComponent(file.name)}`,
        { method: "POST", body: file });
      const made = await response.json();
      await loadModels(made.id);
      tell("");
      await stylizePhoto();
    } catch (e) {
      tell(e.message);
    }
  }

  // -- the photo ------------------------------------------------------------------------------
  async function pickPhoto(file) {
    tell("");
    try {
      const made = await (await call("/api/uploads", { method: "POST", body: file })).json();
      const img = new Image();
      img.src = made.url;
      await img.decode();
      live.photoImg = img;
      live.photo = made.id;
      await stylizePhoto();
    } catch (e) {
      tell(e.message);
    }
  }

  async function stylizePhoto() {
    const model = q("#live-model").value;
    if (!live.photo || !model) return;
    const status = q("#live-result-status");
    status.textContent = "styling…";
    const started = performance.now();
    try {
      const response = await call("/api/live/stylize", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model, upload: live.photo, size: Number(q("#live-size").value) }),
      });
      live.styled = await createImageBitmap(await response.blob());
      drawPhoto();
      status.textContent = `${live.styled.width}×${live.styled.height} in ` +
        `${Math.round(performance.now() - started)} ms`;
    } catch (e) {
      status.textContent = "";
      tell(e.message);
    }
  }

  // -- the camera -----------------------------------------------------------------------------
  function showRate(serverMs) {
    const now = performance.now();
    live.times.push(now);
    while (live.times.length > 2 && now - live.times[0] > 2000) live.times.shift();
    const span = (now - live.times[0]) / 1000;
    const fps = span > 0 ? (live.times.length - 1) / span : 0;
    const shown = q("#live-fps");
    shown.dataset.fps = fps.toFixed(2);
    shown.textContent = `${fps.toFixed(1)} fps · server ${serverMs} ms/frame · ` +
      `${live.frames} frames, ${live.dropped} dropped`;
  }

  async function startCamera() {
    const model = q("#live-model").value;
    if (!model) { tell("camera: pick a model first"); return; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      tell("camera: this browser gives no camera here (it needs http://127.0.0.1 or https)");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (e) {
      tell(`camera: ${e.message}`);
      return;
    }
    tell("");
    const video = q("#live-video");
    video.srcObject = stream;
    await video.play();
    const run = { stream, stopped: false };
    live.camera = run;
    live.times = [];
    q("#live-camera-start").disabled = true;
    q("#live-camera-stop").disabled = false;
    const shown = q("#live-fps");
    shown.dataset.status = "running";
    shown.textContent = "starting…";
    cameraLoop(run, model);
  }

  function stopCamera() {
    const run = live.camera;
    if (!run) return;
    run.stopped = true;
    for (const track of run.stream.getTracks()) track.stop();
    q("#live-video").srcObject = null;
    live.camera = null;
    q("#live-camera-start").disabled = false;
    q("#live-camera-stop").disabled = true;
    const shown = q("#live-fps");
    shown.dataset.status = "stopped";
    shown.textContent = `stopped after ${live.frames} frames`;
  }

  async function cameraLoop(run, model) {
    const video = q("#live-video");
    const grab = document.createElement("canvas");
    const out = q("#live-frame");
    while (!run.stopped) {
      if (video.readyState < 2 || !video.videoWidth) {
        await new Promise((r) => setTimeout(r, 30));
        continue;
      }
      const size = Number(q("#live-camera-size").value) || 256;
      const k = Math.min(1, size / Math.max(video.videoWidth, video.videoHeight));
      grab.width = Math.round(video.videoWidth * k);
      grab.height = Math.round(video.videoHeight * k);
      grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
      const sent = await new Promise((r) => grab.toBlob(r, "image/jpeg", 0.85));
      let response;
      try {
        response = await fetch(`/api/live/frame?model=${encodeURIComponent(model)}` +
          `&size=${size}&client=${live.client}`,
        { method: "POST", body: sent, headers: { "Content-Type": "image/jpeg" } });
      } catch (e) {
        tell(`camera: ${e.message}`);
        break;
      }
      if (run.stopped) break;
      if (response.status === 204) { live.dropped += 1; continue; }
      if (!response.ok) {
        const text = await response.text();
        let message = text;
        try { message = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
        tell(message);
        break;
      }
      const got = await response.blob();
      const styled = await createImageBitmap(got);
      if (run.stopped) break;
      paint(out, grab, styled);
      live.frames += 1;
      live.last = { sent, got };
      out.dataset.frames = String(live.frames);
      showRate(response.headers.get("X-Live-Ms"));
    }
    if (!run.stopped) stopCamera();
  }

  function init() {
    q("#live-model-input").addEventListener("change", (e) => {
      if (e.target.files.length) addModel(e.target.files[0]);
      e.target.value = "";
    });
    q("#live-photo-input").addEventListener("change", (e) => {
      if (e.target.files.length) pickPhoto(e.target.files[0]);
      e.target.value = "";
    });
    q("#live-model").addEventListener("change", stylizePhoto);
    q("#live-size").addEventListener("change", stylizePhoto);
    q("#live-blend").addEventListener("input", drawPhoto);
    q("#live-camera-start").addEventListener("click", startCamera);
    q("#live-camera-stop").addEventListener("click", stopCamera);
    loadModels().then(() => { q("#live-panel").dataset.ready = "1"; })
      .catch((e) => tell(e.message));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
