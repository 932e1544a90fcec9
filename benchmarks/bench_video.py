"""Clips: seconds per frame of the clip driver for style (L-BFGS, Adam) and dream, the optical
flow alone, the temporal warping error of consistent vs independent frames, peak memory.

    python benchmarks/bench_video.py                         # 480p clip from ../shared/video
    python benchmarks/bench_video.py --size 240 --frames 4   # quicker

The clip is made by ../shared/video/make_clip.py (a pan and zoom over a photo, a disc that
crosses it, a scene cut at 2/3; never committed). Each measurement runs in its own process,
so "peak RSS" is that measurement's. Speed uses VGG19 with random weights (speed does not
depend on the values) at the clip's size; a full default run (500 L-BFGS evaluations on the
first frame, 250 on every later one) takes hours per clip on 2 CPU cores, so the style runs
time a few evaluations per frame and the figures per frame at the defaults are
s/eval x evaluations (stated as such). Consistency uses the ImageNet-trained Tiny Darknet
(../shared/models/tiny_darknet) with real steps: the same steps per frame for the temporal
run and for independent frames, warping error (Lai et al. 2018) of both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
MAKE_CLIP = SHARED / "video" / "make_clip.py"
NET = SHARED / "models" / "tiny_darknet" / "load.py"
STYLE_IMAGE = SHARED / "images" / "style" / "vangogh_starry_night.jpg"
DARKNET = {"style_layers": ("lrelu1", "lrelu2", "lrelu4", "lrelu8", "lrelu12"),
           "content_layers": ("lrelu10",)}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def frames_at(clip: Path, n: int) -> list:
    from itertools import islice

    from artconv.video.io import read_frames

    return list(islice(read_frames(clip), n))


# -- the measurements (each in its own process) --------------------------------------------
def measure_flow(args: argparse.Namespace) -> dict:
    from artconv.video.flow import FlowEstimator

    clip = frames_at(args.clip, args.frames)
    est = FlowEstimator("dis", args.flow_preset)
    est.pair(clip[0], clip[1])  # warm-up
    started = time.perf_counter()
    for a, b in zip(clip, clip[1:], strict=False):
        est.pair(a, b).masks()
    per = (time.perf_counter() - started) / (len(clip) - 1)
    return {"s_per_frame": per, "what": f"DIS {args.flow_preset} fwd+bwd+check"}


def measure_style(args: argparse.Namespace, optimizer: str) -> dict:
    from artconv.io.images import load_image
    from artconv.style import StyleOptions, StyleTransfer
    from artconv.video.clip import TemporalLoop
    from artconv.video.options import VideoOptions

    clip = frames_at(args.clip, args.frames)
    size = max(clip[0].shape[:2])
    evals = args.evals
    st = StyleTransfer(StyleOptions(weights="random", size=size, iterations=(evals,),
                                    optimizer=optimizer, precision=args.precision))
    loop = TemporalLoop(st, VideoOptions(frame_iterations=evals),
                        styles=[load_image(STYLE_IMAGE, 512)])
    starts: list[float] = []
    for _index, _out in loop.run(clip):
        starts.append(time.perf_counter())
    later = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    per_frame = sum(later) / len(later)
    per_eval = per_frame / evals
    defaults = StyleOptions()
    default_later = max(1, defaults.iterations[-1] // 2)
    return {"s_per_frame_measured": per_frame, "evals": evals, "s_per_eval": per_eval,
            "default_evals_later_frames": default_later,
            "s_per_frame_at_defaults": per_eval * default_later,
            "flow_s_per_frame": loop.times.flow / max(1, loop.times.frames - 1),
            "flow_wait_s": loop.times.flow_wait, "size": list(clip[0].shape[:2])}


def measure_dream(args: argparse.Namespace) -> dict:
    from artconv.deepdream.engine import Dreamer, DreamOptions
    from artconv.video.clip import TemporalLoop
    from artconv.video.options import VideoOptions

    clip = frames_at(args.clip, args.frames)
    dreamer = Dreamer(DreamOptions(weights="random", precision=args.precision))
    loop = TemporalLoop(dreamer, VideoOptions())
    starts = []
    for _ in loop.run(clip):
        starts.append(time.perf_counter())
    later = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return {"s_per_frame": sum(later) / len(later),
            "flow_s_per_frame": loop.times.flow / max(1, loop.times.frames - 1),
            "flow_wait_s": loop.times.flow_wait}


def measure_consistency(args: argparse.Namespace) -> dict:
    import torch

    from artconv.io.images import load_image
    from artconv.style import StyleOptions, StyleTransfer
    from artconv.video.clip import TemporalLoop
    from artconv.video.options import VideoOptions
    from artconv.video.stats import warping_error

    clip = frames_at(args.clip, args.frames)
    style = load_image(STYLE_IMAGE, 256)
    size = max(clip[0].shape[:2])
    steps = args.quality_steps
    opts = StyleOptions(backbone=f"{NET}:build", size=size, iterations=(steps,),
                        precision="fp32", **DARKNET)
    st = StyleTransfer(opts)
    results = {}
    runs = [("temporal", args.temporal_weight)] + ([("init_only", 0.0)] if args.init_only
                                                   else [])
    for name, weight in runs:
        loop = TemporalLoop(st, VideoOptions(temporal_weight=weight, frame_iterations=steps),
                            styles=[style])
        outs, losses = [], []
        for _, out in loop.run(clip):
            outs.append(out)
            losses.append(loop.frames.last_figures.get("style", float("nan")))
        results[name] = {"warping_error": warping_error(outs, clip).mean,
                         "style_loss": sum(losses) / len(losses)}
    alone, losses = [], []
    for f in clip:
        x = torch.from_numpy(f.copy()).permute(2, 0, 1)[None].float() / 255
        alone.append(st.run(x, [style])[0])
        losses.append(st.last_figures["style"])
    results["independent"] = {"warping_error": warping_error(alone, clip).mean,
                              "style_loss": sum(losses) / len(losses)}
    return {"steps_per_frame": steps, "size": list(clip[0].shape[:2]), **results}


MODES = {"flow": measure_flow, "style-lbfgs": lambda a: measure_style(a, "lbfgs"),
         "style-adam": lambda a: measure_style(a, "adam"), "dream": measure_dream,
         "consistency": measure_consistency}


def child(args: argparse.Namespace) -> None:
    warnings.simplefilter("ignore")
    result = MODES[args.mode](args)
    result["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(result))


def make_clip(folder: Path, height: int, frames: int, fps: int = 12) -> Path:
    width = round(height * 16 / 9) // 2 * 2
    out = folder / f"clip_{height}p.mp4"
    subprocess.run([sys.executable, str(MAKE_CLIP), str(out), "--seconds",
                    str(frames / fps), "--fps", str(fps), "--width", str(width), "--height",
                    str(height)], check=True, capture_output=True)
    return out


def run_child(mode: str, clip: Path, args: argparse.Namespace, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--mode", mode, "--clip", str(clip), "--frames",
           str(frames), "--evals", str(args.evals), "--precision", args.precision,
           "--quality-steps", str(args.quality_steps), "--temporal-weight",
           str(args.temporal_weight), "--flow-preset", args.flow_preset,
           *(["--init-only"] if args.init_only else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=480, help="clip height (16:9)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--evals", type=int, default=4, help="style steps per frame timed")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--flow-preset", default="medium")
    p.add_argument("--quality-size", type=int, default=144, help="consistency clip height")
    p.add_argument("--quality-frames", type=int, default=8)
    p.add_argument("--quality-steps", type=int, default=60)
    p.add_argument("--temporal-weight", type=float, default=200.0)
    p.add_argument("--init-only", action="store_true",
                   help="consistency: also frames that only start from the warped output")
    p.add_argument("--modes", default="flow,style-lbfgs,style-adam,dream,consistency")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        child(args)
        return
    if not MAKE_CLIP.is_file():
        raise SystemExit(f"{MAKE_CLIP}: not here (the clip is made from ../shared)")
    sys.path.insert(0, str(HERE))
    from common import machine

    print(f"# {machine()}; load before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp), args.size, args.frames)
        small = make_clip(Path(tmp), args.quality_size, args.quality_frames)
        for mode in args.modes.split(","):
            started = time.perf_counter()
            if mode == "consistency":
                result = run_child(mode, small, args, args.quality_frames)
            else:
                result = run_child(mode, clip, args, args.frames)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            result["load"] = round(os.getloadavg()[0], 2)
            print(json.dumps({"mode": mode, **result}), flush=True)


if __name__ == "__main__":
    main()
