"""The studio's camera mode on this machine (issue 23): server-side time per frame.

    python benchmarks/bench_live.py                       # width 16 (the light model), 256 px
    python benchmarks/bench_live.py --width 32 --size 480 --precision fp32 --frames 30

What one camera frame costs the server, timed around `artconv.web.live.Live.frame` (the very
code `POST /api/live/frame` runs, minus HTTP): decode the JPEG the page sends (a 4:3 frame,
longest side --size), run the model, encode the JPEG answer. Also the model's forward pass
alone. The model is a TransformerNet(width, blocks) with random weights (the speed of a
network does not depend on its weights), saved in a temporary studio's models/. The goal
is >= 10 frames per second at 256 px with the light model on two CPU cores. Timings on a
shared machine are noisy: the load average is printed with them; the median is the figure.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from artconv.device import autocast, resolve_device, resolve_precision  # noqa: E402
from artconv.fast.model import save_model  # noqa: E402
from artconv.fast.net import TransformerNet  # noqa: E402
from artconv.web.live import Live  # noqa: E402
from artconv.web.studio import Studio  # noqa: E402


def camera_frame(size: int) -> bytes:
    """A smooth 4:3 picture with some edges, as the page's JPEG (quality 85)."""
    h, w = size * 3 // 4, size
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1).float()
    rgb = torch.stack(torch.broadcast_tensors((x + y) / 2, (torch.sin(12 * x) + 1) / 2, disc))
    img = Image.fromarray((rgb.permute(1, 2, 0) * 255).byte().numpy())
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(Path(tmp) / "studio",
                        defaults={"fast": {"precision": args.precision, "device": "cpu"}})
        live = Live(studio)
        torch.manual_seed(0)
        net = TransformerNet(width=args.width, blocks=args.blocks)
        save_model(live.folder / "bench.safetensors", net, {"bench": True})
        frame = camera_frame(args.size)
        for _ in range(3):  # warm-up: the first passes pick oneDNN's kernels
            live.frame("bench.safetensors", frame, args.size, "bench")
        whole, cpu = [], []
        for _ in range(args.frames):
            start, used = time.perf_counter(), time.process_time()
            live.frame("bench.safetensors", frame, args.size, "bench")
            whole.append(time.perf_counter() - start)
            cpu.append(time.process_time() - used)
        _, model = live.open("bench.safetensors")
        x = torch.rand(1, 3, args.size * 3 // 4, args.size)
        forward = []
        device = resolve_device("cpu")
        with torch.no_grad(), autocast(device, resolve_precision(args.precision, device)):
            for _ in range(args.frames):
                start = time.perf_counter()
                model.net(x)
                forward.append(time.perf_counter() - start)
    per_frame = statistics.median(whole)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"model: TransformerNet width {args.width}, {args.blocks} blocks, {args.precision}; "
          f"frame {args.size}x{args.size * 3 // 4} JPEG of {len(frame)} bytes")
    print(f"per frame (decode + model + encode): median {per_frame * 1000:.1f} ms, best "
          f"{min(whole) * 1000:.1f} ms -> {1 / per_frame:.1f} frames/s "
          f"(best {1 / min(whole):.1f})")
    # CPU seconds the process spent on a frame (all its threads): what a frame costs
    # whatever the other programs on the machine do; / threads = the wall time on that many
    # idle cores if the work splits evenly (an estimate: it ignores imperfect scaling).
    spent = statistics.median(cpu)
    print(f"CPU time per frame: median {spent * 1000:.1f} ms -> on {args.threads} idle "
          f"cores ~{spent / args.threads * 1000:.1f} ms = ~{args.threads / spent:.1f} "
          "frames/s (estimate)")
    print(f"forward pass alone ({args.precision}): median "
          f"{statistics.median(forward) * 1000:.1f} ms, best {min(forward) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
