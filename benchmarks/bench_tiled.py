"""Exact tiled style evaluation (`--tile`): peak memory and seconds per evaluation, tiled
against untiled, and the memory estimate the engine plans with.

    python benchmarks/bench_tiled.py --sizes 1024,2048,4096 --tile 512 [--json]
    python benchmarks/bench_tiled.py --sizes 7680x4320 --modes tiled --tile 1024
    python benchmarks/bench_tiled.py --quality 512 --steps 5     # tiled vs untiled run
    python benchmarks/bench_tiled.py --calibrate 256,512          # one pass vs its estimate
    python benchmarks/bench_tiled.py --ratio 2048 --tile 512 --evals 3  # one process, alternating
    python benchmarks/bench_tiled.py --contrast 512 --tile 256 --backbone NET.py:build \
        --content photo.jpg --style painting.jpg --picture out.png  # vs independent tiles

Each configuration runs in its own process, so its peak RSS (monotonic within a process)
is its own. One evaluation = what one L-BFGS step costs: the loss and its gradient at the
image (untiled: one forward and backward; tiled: a forward over every tile for the global
statistics, then a forward and backward per tile), on VGG19 with random weights (speed does
not depend on them), the default layers, L-BFGS with the default history. `bytes/px` is
the growth of peak RSS per added pixel from the previous size of the same mode.
`bench_style.py --tiled` runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, peak_memory_mb, report  # noqa: E402

from artconv.nets.pooling import pink_noise  # noqa: E402
from artconv.style import StyleOptions, StyleTransfer  # noqa: E402
from artconv.style.tiled import TiledObjective  # noqa: E402

HERE = Path(__file__).resolve()


def size_of(text: str) -> tuple[int, int]:
    """'2048' (square) or '7680x4320' (width x height) -> (height, width)."""
    w, _, h = text.partition("x")
    return (int(h or w), int(w))


def engine(args: argparse.Namespace, precision: str, **changes: Any) -> StyleTransfer:
    layers = {k: tuple(v.split(",")) for k, v in (("content_layers", args.content_layers),
                                                  ("style_layers", args.style_layers)) if v}
    opts = StyleOptions(weights=args.weights, backbone=args.backbone, device=args.device,
                        precision=precision, style_loss=args.style_loss, **layers, **changes)
    with warnings.catch_warnings():  # random weights warn that results are noise
        warnings.simplefilter("ignore")
        return StyleTransfer(opts)


def one(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this process: mode, size, precision."""
    from artconv.io.images import resize_to

    hw, mode, precision = size_of(args.one[0]), args.one[1], args.one[2]
    tile = args.tile if mode == "tiled" else 0
    st = engine(args, precision, size=max(hw), tile=tile)
    base = peak_memory_mb(st.device)
    # made small and enlarged: an FFT at the full size would set the peak RSS itself
    content = resize_to(pink_noise(512), hw).to(st.device)
    style = pink_noise(512, seed=1)[0].to(st.device)
    targets = st.style_targets([style], max(hw))
    estimate = st.memory(hw)
    objective = st.objective(content, targets, tile=tile)
    x = content.clone()
    times = []
    for _ in range(args.evals):
        start = time.perf_counter()
        _, grad = objective.value_and_grad(x)
        float(grad[0, 0, 0, 0])  # waits for the device
        times.append(time.perf_counter() - start)
    tiles = len(objective.plan(hw)) if isinstance(objective, TiledObjective) else 1
    return {"size": f"{hw[1]}x{hw[0]}", "mode": mode, "precision": st.precision,
            "tiles": tiles, "s/eval": round(min(times), 2),
            "peak_MB": round(peak_memory_mb(st.device)), "net_MB": round(base),
            # the engine's estimate of a whole run, less the optimiser state this one lacks
            "estimate_MB": round((estimate.total - estimate.buffers["optimiser"]) / 2**20),
            "load": round(os.getloadavg()[0], 1)}


def ratio(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Tiled against untiled in one process, evaluations alternating, so a shared machine's
    changing load falls on both alike: the best time of each and their ratio."""
    from artconv.io.images import resize_to

    hw = size_of(args.ratio)
    rows = []
    for precision in args.precisions.split(","):
        st = engine(args, precision, size=max(hw))
        content = resize_to(pink_noise(512), hw).to(st.device)
        targets = st.style_targets([pink_noise(512, seed=1)[0].to(st.device)], max(hw))
        objectives = {0: st.objective(content, targets),
                      args.tile: st.objective(content, targets, tile=args.tile)}
        x = content.clone()
        times: dict[int, list[float]] = {tile: [] for tile in objectives}
        for _ in range(args.evals):
            for tile, objective in objectives.items():
                start = time.perf_counter()
                _, grad = objective.value_and_grad(x)
                float(grad[0, 0, 0, 0])  # waits for the device
                times[tile].append(time.perf_counter() - start)
        best = {tile: min(t) for tile, t in times.items()}
        rows.append({"size": args.ratio, "precision": st.precision, "tile": args.tile,
                     "untiled_s": round(best[0], 2), "tiled_s": round(best[args.tile], 2),
                     "ratio": round(best[args.tile] / best[0], 2),
                     "load": round(os.getloadavg()[0], 1)})
    return rows


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for precision in args.precisions.split(","):
        for mode in args.modes.split(","):
            last: dict[str, Any] | None = None
            for size in args.sizes.split(","):
                cmd = [sys.executable, str(HERE), "--one", size, mode, precision,
                       *_passed(args)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                    rows.append({"size": size, "mode": mode, "precision": precision,
                                 "error": tail[:120]})
                    print(f"# {size} {mode} {precision}: {tail}", file=sys.stderr)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                if last is not None:
                    h, w = size_of(size)
                    lh, lw = size_of(last["given"])
                    row["bytes/px"] = round((row["peak_MB"] - last["peak_MB"]) * 2**20
                                            / (h * w - lh * lw))
                row["given"] = size
                last = row
                rows.append(row)
                print(f"# {row}", file=sys.stderr, flush=True)
    for row in rows:
        row.pop("given", None)
    return rows


def _passed(args: argparse.Namespace) -> list[str]:
    out = ["--tile", str(args.tile), "--evals", str(args.evals), "--weights", args.weights,
           "--device", args.device, "--style-loss", args.style_loss]
    for flag, value in (("--backbone", args.backbone), ("--content-layers",
                                                         args.content_layers),
                        ("--style-layers", args.style_layers)):
        if value:
            out += [flag, value]
    return out


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same run (seed, steps) tiled and untiled: the largest pixel difference."""
    size = args.quality
    content, style = pink_noise(size), pink_noise(512, seed=1)[0]
    out = {}
    for tile in (0, args.tile):
        st = engine(args, "fp32", size=size, tile=tile, iterations=(args.steps,),
                    optimizer=args.optimizer)
        start = time.perf_counter()
        out[tile] = (st.run(content, [style]), time.perf_counter() - start)
    diff = (out[0][0] - out[args.tile][0]).abs().max()
    return [{"size": size, "optimizer": args.optimizer, "steps": args.steps,
             "tile": args.tile, "max_pixel_diff": float(diff),
             "max_diff_in_8bit_levels": float(diff * 255), "untiled_s": round(out[0][1], 1),
             "tiled_s": round(out[args.tile][1], 1), "load": os.getloadavg()[0]}]


def calibrate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One forward+backward pass of the network vs `tiling.pass_bytes` (own processes)."""
    rows = []
    for size in args.calibrate.split(","):
        done = subprocess.run([sys.executable, str(HERE), "--one-pass", size, *_passed(args)],
                              capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0
                    else {"size": size, "error": done.stderr.strip()[-120:]})
    return rows


def one_pass(args: argparse.Namespace) -> dict[str, Any]:
    """A plain forward and backward to the deepest style layer, in this process."""
    from artconv.nets.tiling import pass_bytes

    hw = size_of(args.one_pass)
    st = engine(args, "fp32")
    layers = [*st.options.content_layers, *st.options.style_layers]
    deepest = st.fx.check_layers(layers)[-1]
    base = peak_memory_mb(st.device)
    x = torch.rand(1, 3, *hw, device=st.device, requires_grad=True)
    feats = st.fx(x, layers)
    sum(f.square().mean() for f in feats.values()).backward()
    return {"size": args.one_pass, "pass_MB": round(peak_memory_mb(st.device) - base),
            "estimate_MB": round(pass_bytes(st.fx.net, hw, deepest) / 2**20)}


def contrast(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Neural-Tile's way for contrast: each tile stylised on its own (style statistics per
    tile, seams feathered) next to the global result (= the exact tiled one), on a real
    network; both scored by the global loss. Writes a side-by-side picture to --picture."""
    from artconv.io.images import load_image, resize_to, save_image

    size, tile, overlap = args.contrast, args.tile, args.tile // 4
    content = load_image(args.content)[None]
    style = load_image(args.style)
    common = {"iterations": (args.steps,), "optimizer": "lbfgs"}
    whole = engine(args, "fp32", size=size, **common)
    start = time.perf_counter()
    glob = whole.run(content, [style])
    glob_s = time.perf_counter() - start
    hw = tuple(glob.shape[-2:])
    photo = resize_to(content, hw)
    out, weight = torch.zeros_like(glob), torch.zeros_like(glob[:, :1])
    start = time.perf_counter()
    for top in range(0, hw[0], tile - overlap):
        for left in range(0, hw[1], tile - overlap):
            b, r = min(hw[0], top + tile), min(hw[1], left + tile)
            piece = photo[..., top:b, left:r]
            # the style image at the scale the whole output sees it
            st = engine(args, "fp32", size=max(b - top, r - left),
                        style_scale=size / max(b - top, r - left), **common)
            res = st.run(piece, [style])
            ramp = _feather(b - top, r - left, overlap, (top > 0, b < hw[0], left > 0,
                                                         r < hw[1]))
            out[..., top:b, left:r] += res * ramp
            weight[..., top:b, left:r] += ramp
            if r == hw[1]:
                break
        if b == hw[0]:
            break
    tiles_s = time.perf_counter() - start
    tiled = out / weight.clamp_min(1e-8)
    score = whole.objective(photo, whole.style_targets([style], size))
    losses = {name: score(x).sum(1).tolist() for name, x in (("global", glob),
                                                              ("independent", tiled))}
    if args.picture:
        save_image(torch.cat([glob, tiled], -1)[0], args.picture)
    return [{"run": name, "content": round(v[0], 4), "style": round(v[1], 4),
             "tv": round(v[2], 4), "s": round(glob_s if name == "global" else tiles_s, 1)}
            for name, v in losses.items()]


def _feather(h: int, w: int, overlap: int, sides: tuple[bool, bool, bool, bool]
             ) -> torch.Tensor:
    """Linear ramps over `overlap` px on the sides that meet another tile."""
    ys, xs = torch.ones(h), torch.ones(w)
    ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
    top, bottom, left, right = sides
    if top:
        ys[:overlap] = ramp
    if bottom:
        ys[-overlap:] = ramp.flip(0)
    if left:
        xs[:overlap] = ramp
    if right:
        xs[-overlap:] = ramp.flip(0)
    return (ys[:, None] * xs[None, :])[None, None]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1024,2048,4096",
                   help="comma-separated: N (square) or WxH")
    p.add_argument("--modes", default="untiled,tiled")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--tile", type=int, default=512, help="core px per side (tiled mode)")
    p.add_argument("--evals", type=int, default=1, help="timed evaluations (the best kept)")
    p.add_argument("--quality", type=int, default=0, help="size of a tiled vs untiled run")
    p.add_argument("--steps", type=int, default=5, help="steps of the --quality run")
    p.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs"])
    p.add_argument("--ratio", default="",
                   help="size of a tiled vs untiled comparison in one process, alternating")
    p.add_argument("--calibrate", default="", help="sizes of single passes to measure")
    p.add_argument("--contrast", type=int, default=0,
                   help="size of a global vs independent-tiles (Neural-Tile) comparison")
    p.add_argument("--content", default=None, help="content photo (--contrast)")
    p.add_argument("--style", default=None, help="style painting (--contrast)")
    p.add_argument("--picture", default=None, help="where --contrast writes its picture")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.add_argument("--weights", default="random")
    p.add_argument("--backbone", default=None)
    p.add_argument("--content-layers", default=None)
    p.add_argument("--style-layers", default=None)
    p.add_argument("--style-loss", default="gram", choices=["gram", "w2"])
    p.add_argument("--device", default="auto")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # SIZE MODE PRECISION, internal
    p.add_argument("--one-pass", help=argparse.SUPPRESS)  # SIZE, internal
    args = p.parse_args(argv)
    if args.one or args.one_pass:
        print(json.dumps(one(args) if args.one else one_pass(args)))
        return
    print(f"# {machine()}; load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if args.calibrate:
        rows = calibrate(args)
    elif args.contrast:
        rows = contrast(args)
    elif args.ratio:
        rows = ratio(args)
    elif args.quality:
        rows = quality(args)
    else:
        rows = speed(args)
    report(rows, args.json)


if __name__ == "__main__":
    main()
