"""Clips through trained style networks (issue 23): frames per second, and flicker.

    python benchmarks/bench_fast_video.py speed --sizes 480,1080 --widths 32,16
    python benchmarks/bench_fast_video.py clip --clip /tmp/clip480.mp4 --width 16
    python benchmarks/bench_fast_video.py flicker --clip /tmp/clip.mp4 \
        --model plain=/tmp/plain.safetensors --model temporal=/tmp/temporal.safetensors \
        --blend 0,0.5 --sheet /tmp/flicker_sheet.png

`speed`: the network alone (`FastStyle.run` on `--batch` frames, after a small warm-up) at
854x480 and 1920x1080, fp32 and bf16, for random-weight networks of each --width (5
residual blocks; the weights do not change the speed). `clip`: the whole clip driver
(`run_clip`: decode, the passes, a PNG per frame, encode) on a clip, frames per second.
`flicker`: each model, with and without --flow-blend, over the clip that
../shared/video/make_clip.py makes (known motion, an occluding disc, a scene cut; make it
under /tmp, never commit it): the warping error (`artconv video-stats`' measure) and the
relative style error of every 8th frame on Tiny Darknet (benchmarks/bench_loss_scale.py's
measure, against van Gogh's Starry Night, the style bench_fast.py trains); --sheet writes
a few frames side by side to look at. Timings on a shared machine are noisy: the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fast import NET, STYLE  # noqa: E402
from bench_loss_scale import CONTENT_LAYERS, STYLE_LAYERS, errors  # noqa: E402
from common import machine  # noqa: E402

from artconv.fast.engine import FastStyle  # noqa: E402
from artconv.fast.model import save_model  # noqa: E402
from artconv.fast.net import TransformerNet  # noqa: E402
from artconv.fast.options import FastOptions  # noqa: E402
from artconv.io.images import load_image, save_image  # noqa: E402
from artconv.io.sheet import contact_sheet  # noqa: E402
from artconv.video.clip import run_clip  # noqa: E402
from artconv.video.feedforward import FeedForwardLoop  # noqa: E402
from artconv.video.io import read_frames  # noqa: E402
from artconv.video.options import VideoOptions  # noqa: E402
from artconv.video.stats import warping_error  # noqa: E402

SIZES = {480: (480, 854), 720: (720, 1280), 1080: (1080, 1920)}


def _load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def _random_model(folder: Path, width: int, blocks: int = 5) -> Path:
    torch.manual_seed(0)
    return save_model(folder / f"random_w{width}.safetensors", TransformerNet(width, blocks),
                      {"engine": "bench", "width": width})


def bench_speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Frames per second of the network pass alone."""
    rows = []
    print(f"# {machine()}, {_load()}")
    print(f"{'width':>5} {'size':>9} {'precision':>9} {'batch':>5} {'s/pass':>8} "
          f"{'frames/s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for width in map(int, args.widths.split(",")):
            model = _random_model(Path(tmp), width)
            for size in map(int, args.sizes.split(",")):
                h, w = SIZES[size]
                frames = torch.rand(args.batch, 3, h // 8, w // 8)
                frames = torch.nn.functional.interpolate(frames, size=(h, w), mode="bilinear")
                for precision in args.precisions.split(","):
                    engine = FastStyle(FastOptions(model=str(model), precision=precision,
                                                   device="cpu"))
                    # warm-up (threads, weights, kernels) at a quarter of the size: a
                    # first pass at 1080p would cost as much as the one timed
                    engine.run(frames[:1, :, : h // 4, : w // 4])
                    start = time.perf_counter()
                    engine.run(frames)
                    seconds = time.perf_counter() - start
                    row = {"width": width, "size": f"{w}x{h}", "precision": engine.precision,
                           "batch": args.batch, "seconds_per_pass": seconds,
                           "frames_per_second": args.batch / seconds, "load": _load()}
                    rows.append(row)
                    print(f"{width:>5} {row['size']:>9} {row['precision']:>9} "
                          f"{args.batch:>5} {seconds:>8.2f} {row['frames_per_second']:>8.3f}"
                          f"   ({row['load']})", flush=True)
    return rows


def bench_clip(args: argparse.Namespace) -> dict[str, Any]:
    """Frames per second of the whole driver on a clip."""
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else _random_model(Path(tmp), args.width)
        engine = FastStyle(FastOptions(model=str(model), precision=args.precision,
                                       device="cpu"))
        video = VideoOptions(batch=args.batch, flow_blend=args.blend)
        start = time.perf_counter()
        result = run_clip(engine, args.clip, Path(tmp) / "out.mp4", video=video)
        seconds = time.perf_counter() - start
    row = {"machine": machine(), "load": _load(), "clip": args.clip, "frames": result.frames,
           "precision": engine.precision, "batch": args.batch, "flow_blend": args.blend,
           "seconds": seconds, "frames_per_second": result.frames / seconds,
           "network_seconds": result.times.engine, "flow_seconds": result.times.flow}
    print(json.dumps(row, indent=1))
    return row


def bench_flicker(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warping error and style error of each model, with and without the flow blend."""
    from artconv.style import StyleOptions, StyleTransfer

    inputs = list(read_frames(args.clip, VideoOptions()))
    h, w = inputs[0].shape[:2]
    st = StyleTransfer(StyleOptions(backbone=f"{NET}:build", size=max(h, w),
                                    style_layers=STYLE_LAYERS, content_layers=CONTENT_LAYERS,
                                    precision="fp32", device="cpu"))
    style = load_image(STYLE)
    sheet_frames = [int(k) for k in args.sheet_frames.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {machine()}, {_load()}; {args.clip}: {len(inputs)} frames {w}x{h}")
    print(f"{'model':>10} {'blend':>5} {'warping error':>13} {'style err':>9} "
          f"{'content':>8} {'frames/s':>8}")
    rows, cells, columns = [], {}, []
    for r, k in enumerate(sheet_frames):
        cells[(r, -1)] = str(save_image(torch.from_numpy(inputs[k - 1]).permute(2, 0, 1)
                                        .float() / 255, out / f"input_{k:03d}.png"))
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        for blend in map(float, args.blend.split(",")):
            engine = FastStyle(FastOptions(model=path, precision=args.precision, device="cpu"))
            loop = FeedForwardLoop(engine, VideoOptions(batch=args.batch, flow_blend=blend))
            start = time.perf_counter()
            outputs = [o for _, o in loop.run(inputs)]
            seconds = time.perf_counter() - start
            e_warp = warping_error(outputs, inputs).mean
            with torch.no_grad():
                errs = [errors(st, outputs[i][None], torch.from_numpy(inputs[i]).permute(
                    2, 0, 1).float() / 255, style, max(h, w))[:2]
                    for i in range(0, len(outputs), 8)]
            row = {"model": name or path, "blend": blend, "warping_error": e_warp,
                   "style_error": sum(e[0] for e in errs) / len(errs),
                   "content_error": sum(e[1] for e in errs) / len(errs),
                   "frames_per_second": len(outputs) / seconds, "load": _load()}
            rows.append(row)
            print(f"{row['model']:>10} {blend:>5g} {e_warp:>13.3e} {row['style_error']:>9.4f}"
                  f" {row['content_error']:>8.4f} {row['frames_per_second']:>8.2f}",
                  flush=True)
            c = len(columns)
            columns.append(None)
            for r, k in enumerate(sheet_frames):
                cells[(r, c)] = str(save_image(outputs[k - 1],
                                               out / f"{row['model']}_b{blend:g}_{k:03d}.png"))
    if args.sheet:
        rows_in = [cells.pop((r, -1)) for r in range(len(sheet_frames))]
        contact_sheet(rows_in, columns, cells, args.sheet, thumb=args.thumb,
                      row_labels=[f"frame {k}" for k in sheet_frames], corner_label="input",
                      column_labels=[f"{r['model']} blend {r['blend']:g}" for r in rows])
        print(f"sheet: {args.sheet} (rows: frames {args.sheet_frames}; columns: "
              + ", ".join(f"{r['model']} blend {r['blend']:g}" for r in rows) + ")")
    if args.json:
        print(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed", help="the network pass alone (bench_speed)")
    s.add_argument("--sizes", default="480,1080")
    s.add_argument("--widths", default="32,16")
    s.add_argument("--precisions", default="fp32,bf16")
    s.add_argument("--batch", type=int, default=2)
    c = sub.add_parser("clip", help="the whole clip driver (bench_clip)")
    c.add_argument("--clip", required=True)
    c.add_argument("--model", default=None, help="default: random weights of --width")
    c.add_argument("--width", type=int, default=16)
    c.add_argument("--precision", default="auto")
    c.add_argument("--batch", type=int, default=4)
    c.add_argument("--blend", type=float, default=0.0)
    f = sub.add_parser("flicker", help="warping and style error (bench_flicker)")
    f.add_argument("--clip", required=True)
    f.add_argument("--model", action="append", required=True, help="[NAME=]MODEL, repeated")
    f.add_argument("--blend", default="0,0.5")
    f.add_argument("--precision", default="auto")
    f.add_argument("--batch", type=int, default=4)
    f.add_argument("--out", default="/tmp/artconv_bench_fast_video")
    f.add_argument("--sheet", default=None)
    f.add_argument("--sheet-frames", default="10,11,12,47,48,49")
    f.add_argument("--thumb", type=int, default=256)
    f.add_argument("--json", action="store_true")
    for p in (s, c, f):
        p.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "flicker" and not NET.is_file():
        sys.exit(f"needs {NET} (the shared Tiny Darknet)")
    {"speed": bench_speed, "clip": bench_clip, "flicker": bench_flicker}[args.what](args)


if __name__ == "__main__":
    main()
