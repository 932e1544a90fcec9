"""Fast style networks on this machine (issue 22): training speed, quality against the
optimiser, and inference speed.

    python benchmarks/bench_fast.py train --minutes 10 --width 16 --out /tmp/fast
    python benchmarks/bench_fast.py quality --model /tmp/fast/model.safetensors --out /tmp/fast
    python benchmarks/bench_fast.py quality --model M --baseline 2     # + the optimiser on 2

`train` (`bench_training`): `artconv.fast.train.train` on ../shared/images/train with the
real network here (../shared/models/tiny_darknet, style lrelu1,2,4,8,12, content lrelu10),
van Gogh's Starry Night, stopped after --minutes (or --steps); prints steps/s and photos/s
(the trainer's own timing of its steps, and the wall clock with previews and checkpoints).
Re-running with the same --out resumes.

`quality` (`bench_quality`): the model on the held-out photos in ../shared/images/content
at --size px with the style benchmark's relative errors (benchmarks/bench_loss_scale.py:
style |G-A|^2/|A|^2 averaged over the style layers, content |F-P|^2/|P|^2 at lrelu10),
against the optimiser's defaults on the same photos (--baseline N: the first N photos;
issue 22 quotes 0.03 style / 0.38 content at 256 px for it); writes a side-by-side sheet
(photo, model, optimiser) to --out to look at. Timings on a shared machine are noisy: the
load average is printed with them.

`infer` (`bench_inference`): seconds per photo through a trained network (width 32, the
published one, and 16) at 512 and 1024 px in fp32 and bf16, against one optimisation
evaluation (the style engine's objective, value and gradient, on the same network as
`quality`) at the same size; peak memory (RSS) of inference at 1024 px and of --tile at
4096 px. Each configuration runs in its own process (a peak RSS never goes down).

    python benchmarks/bench_fast.py infer                      # all of it (minutes)
    python benchmarks/bench_fast.py infer --sizes 512 --tiled-size 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loss_scale import CONTENT_LAYERS, STYLE_LAYERS, errors  # noqa: E402
from common import machine, report  # noqa: E402

from artconv.fast.data import list_photos  # noqa: E402
from artconv.fast.model import load_model  # noqa: E402
from artconv.fast.train import temporal_loss, train  # noqa: E402
from artconv.fast.train_options import TrainOptions  # noqa: E402
from artconv.io.images import load_image, save_image  # noqa: E402
from artconv.io.sheet import contact_sheet  # noqa: E402
from artconv.style import StyleOptions, StyleTransfer  # noqa: E402

# ../shared beside the checkout (a worktree may sit a level deeper than the main one)
SHARED = next((p / "shared" for p in Path(__file__).resolve().parents[1:]
               if (p / "shared" / "models").is_dir()), Path("shared"))
NET = SHARED / "models" / "tiny_darknet" / "load.py"
STYLE = SHARED / "images" / "style" / "vangogh_starry_night.jpg"
TRAIN = SHARED / "images" / "train"
CONTENT = SHARED / "images" / "content"


def _load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def bench_training(args: argparse.Namespace) -> dict[str, Any]:
    """Train for --minutes (or --steps) and report the speed; the model lands in --out."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = TrainOptions(backbone=f"{NET}:build", style_layers=STYLE_LAYERS,
                        content_layers=CONTENT_LAYERS, crop=args.crop, width=args.width,
                        blocks=args.blocks, batch_size=args.batch_size,
                        style_scale=args.style_scale, lr=args.lr,
                        precision=args.precision, steps=args.steps,
                        style_weight=args.style_weight, content_weight=args.content_weight,
                        tv_weight=args.tv_weight, temporal_weight=args.temporal_weight,
                        preview_every=args.preview_every, checkpoint_every=100)
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    first: list[tuple[int, float]] = []  # (step, time) of the first step of this run
    last: list[float] = [0.0]

    def until_deadline(step: Any) -> bool:
        last[0] = time.monotonic()
        if not first:
            first.append((step.done, last[0]))
        if step.done % 20 == 0:
            print(f"step {step.done}: " + "  ".join(f"{k} {v:.4g}" for k, v in
                                                  step.figures.items()), flush=True)
        return deadline is None or time.monotonic() < deadline

    result = train(opts, [str(STYLE)], list_photos(str(TRAIN)), out / "model.safetensors",
                   callback=until_deadline, log=print)
    # wall clock between the first and the last step of this run: previews and
    # checkpoints included, loading the network and the photos not
    steps = result.done - first[0][0] if first else 0
    wall = last[0] - first[0][1] if first else 0.0
    row = {"machine": machine(), "load": _load(), "crop": args.crop, "width": args.width,
           "blocks": args.blocks, "batch": args.batch_size, "precision": args.precision,
           "steps_done": result.done, "steps_timed": steps,
           "steps_per_s": steps / wall if wall > 0 else 0.0,
           "photos_per_s_wall": steps * args.batch_size / wall if wall > 0 else 0.0,
           "photos_per_s_steps": result.photos_per_second, "photos": result.photos,
           "heldout": result.heldout, "skipped": len(result.skipped),
           "losses": result.figures, "heldout_loss": result.heldout_loss,
           "model": str(result.output), "work_folder": str(result.folder)}
    print(json.dumps(row, indent=1))
    return row


@torch.no_grad()
def bench_quality(args: argparse.Namespace) -> dict[str, Any]:
    """Relative style and content errors of the model (and of the optimiser on the first
    --baseline photos) on the held-out photos at --size."""
    net, recipe = load_model(args.model)
    st = StyleTransfer(StyleOptions(backbone=f"{NET}:build", size=args.size,
                                    style_layers=STYLE_LAYERS, content_layers=CONTENT_LAYERS,
                                    precision="fp32", device="cpu"))
    style = load_image(STYLE)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {machine()}, {_load()}")
    print(f"# model {args.model}: {recipe.get('steps')} steps, crop "
          f"{recipe['options']['crop']}, width {recipe['options']['width']}; {args.size} px")
    print(f"{'photo':<30} {'model style':>11} {'content':>8} {'s/photo':>8}"
          f" {'optim style':>11} {'content':>8} {'s':>6}")
    rows, cells = [], {}
    photos = sorted(p for p in CONTENT.iterdir() if p.suffix in (".png", ".jpg"))
    for r, photo in enumerate(photos):
        content = load_image(photo, args.size)
        start = time.perf_counter()
        result = net(content[None]).clamp(0, 1)
        seconds = time.perf_counter() - start
        s_err, c_err, _ = errors(st, result, content, style, args.size)
        # the temporal term's measure (1 = the output moves as steadily as the input)
        unsteady = float(temporal_loss(net, content[None], net(content[None], clamp=False),
                                       torch.Generator().manual_seed(r), torch.device("cpu"),
                                       "fp32")[0])
        row: dict[str, Any] = {"photo": photo.name, "model_style": s_err,
                               "model_content": c_err, "model_seconds": seconds,
                               "unsteadiness": unsteady}
        cells[(r, 0)] = str(save_image(result[0], out / f"{photo.stem}_model.png"))
        done = out / f"{photo.stem}_optimised.png"  # an earlier --baseline run's, reused
        if r < args.baseline or done.is_file():
            start = time.perf_counter()
            if done.is_file() and r >= args.baseline:
                optimised = load_image(done)[None]
            else:
                with torch.enable_grad():
                    optimised = st.run(content[None], [style])
                row["optimiser_seconds"] = time.perf_counter() - start
                save_image(optimised[0], done)
            row["optimiser_style"], row["optimiser_content"], _ = errors(
                st, optimised, content, style, args.size)
            cells[(r, 1)] = str(done)
        rows.append(row)
        print(f"{photo.name:<30} {s_err:>11.4f} {c_err:>8.4f} {seconds:>8.3f}"
              + (f" {row['optimiser_style']:>11.4f} {row['optimiser_content']:>8.4f}"
                 f" {row.get('optimiser_seconds', 0):>6.0f}" if "optimiser_style" in row
                 else ""),
              flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows)
            for k in ("model_style", "model_content", "unsteadiness")}
    print(f"{'mean':<30} {mean['model_style']:>11.4f} {mean['model_content']:>8.4f}"
          f"   unsteadiness {mean['unsteadiness']:.3f} (temporal term, 1 = as the input)")
    has_optimiser = any(c == 1 for _, c in cells)
    sheet = contact_sheet([str(p) for p in photos], [None] * (1 + has_optimiser), cells,
                          out / f"side_by_side_{args.size}.png", thumb=args.size,
                          column_labels=["network", "optimiser"][:1 + has_optimiser],
                          corner_label="photo")
    print(f"sheet: {sheet} (rows: photo, model, optimiser)")
    summary = {"machine": machine(), "size": args.size, "rows": rows, "mean": mean}
    if args.json:
        print(json.dumps(summary, indent=1))
    return summary


def _infer_child(config: dict[str, Any]) -> dict[str, Any]:
    """One configuration, in this (fresh) process: its seconds and peak RSS."""
    import resource

    from artconv.device import autocast, resolve_device, synchronize
    from artconv.fast.net import TransformerNet
    from artconv.fast.tiled import tiled_forward

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.manual_seed(0)
    device = resolve_device(config["device"])
    size, precision = config["size"], config["precision"]
    photo = _photo(size)
    base = rss_mb()
    if config["kind"] == "evaluation":  # what every optimiser step costs at least
        # the shared Tiny Darknet, or VGG19 with the style defaults (random weights: speed)
        net_options = ({"backbone": f"{NET}:build", "style_layers": STYLE_LAYERS,
                        "content_layers": CONTENT_LAYERS} if config.get("net", "tiny") == "tiny"
                       else {"arch": "vgg19", "weights": "random"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = StyleTransfer(StyleOptions(precision=precision, device=config["device"],
                                            size=size, **net_options))
        content = photo.to(device)
        objective = st.objective(content, st.style_targets([_style(size)], size))
        x = content.clone().requires_grad_(True)

        def once() -> None:
            x.grad = None
            objective(x).sum().backward()
    else:
        net = TransformerNet(width=config["width"]).to(device).eval()
        out = torch.empty_like(photo)

        def once() -> None:
            with torch.no_grad():
                if config["tile"]:
                    tiled_forward(net, photo, config["tile"], out=out, device=device,
                                  autocast=lambda: autocast(device, precision))
                else:
                    with autocast(device, precision):
                        net(photo.to(device)).float().cpu()
    for _ in range(config["warmup"]):
        once()
    wall, cpu = [], []
    for _ in range(config["repeats"]):
        synchronize(device)
        w, c = time.perf_counter(), time.process_time()
        once()
        synchronize(device)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    # With one thread the CPU seconds are the work done whatever else runs on the machine
    # (wall seconds on a shared machine are mostly other people's load).
    return {**config, "s": sorted(wall)[len(wall) // 2], "cpu s": sorted(cpu)[len(cpu) // 2],
            "peak MB": rss_mb(), "work MB": rss_mb() - base}


def _photo(size: int) -> torch.Tensor:
    """A held-out photo at `size` px on its longest side (pink noise without ../shared)."""
    photos = sorted(CONTENT.glob("*.jpg")) if CONTENT.is_dir() else []
    if photos:
        return load_image(photos[0], size)[None]
    g = torch.Generator().manual_seed(1)
    spectrum = torch.randn(1, 3, size, size, dtype=torch.complex64, generator=g)
    f = torch.fft.fftfreq(size).abs()
    spectrum /= (f[:, None] ** 2 + f[None] ** 2).sqrt().clamp_min(1 / size)
    x = torch.fft.ifft2(spectrum).real
    return ((x - x.mean()) / (4 * x.std()) + 0.5).clamp(0, 1)


def _style(size: int) -> torch.Tensor:
    return load_image(STYLE, size) if STYLE.is_file() else _photo(size)[0].flip(-1)


def bench_inference(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per photo (fp32, bf16) at each size against one evaluation; peak memory at
    1024 px and of the tiled run at --tiled-size. Prints a table (or JSON)."""
    import subprocess

    configs = []
    for size in args.sizes:
        for precision in args.precisions:
            for net in args.eval_nets:
                configs.append({"kind": "evaluation", "net": net, "size": size,
                                "precision": precision, "width": 0, "tile": 0})
            for width in args.widths:
                configs.append({"kind": "photo", "net": "", "size": size,
                                "precision": precision, "width": width, "tile": 0})
    if args.tiled_size:
        for tile in (0, args.tile) if args.tiled_untiled else (args.tile,):
            configs.append({"kind": "photo", "net": "", "size": args.tiled_size,
                            "precision": args.tiled_precision, "width": 32, "tile": tile})
    rows = []
    for config in configs:
        config = {**config, "device": args.device, "threads": args.threads or 0,
                  "repeats": 1 if config["tile"] else args.repeats,
                  "warmup": 0 if config["tile"] else 1}
        done = subprocess.run([sys.executable, __file__, "infer", "--child",
                               json.dumps(config)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{config}: {done.stderr.strip().splitlines()[-1:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {_row_text(rows[-1])}", file=sys.stderr)
    clock = "cpu s" if args.threads == 1 else "s"  # ratios from the work done, if it can
    for row in rows:  # the goal: a photo in at most half an evaluation
        for net in args.eval_nets:
            evals = [r[clock] for r in rows if r["kind"] == "evaluation" and r["net"] == net
                     and (r["size"], r["precision"]) == (row["size"], row["precision"])]
            row[f"x eval {net}"] = row[clock] / evals[0] if evals else None
    print(f"# {machine()}; {_load()}")
    print(f"# output of {args.tiled_size} px: {3 * 4 * args.tiled_size ** 2 / 2**20:.0f} MB "
          "fp32 (the tiled run holds the photo and it)")
    keys = ("kind", "net", "size", "precision", "width", "tile", "s", "cpu s",
            *[f"x eval {n}" for n in args.eval_nets], "peak MB", "work MB")
    report([{k: r.get(k) for k in keys} for r in rows], as_json=args.json)
    return rows


def _row_text(row: dict[str, Any]) -> str:
    return (f"{row['kind']} {row['net']} {row['size']} px {row['precision']} width "
            f"{row['width']} tile "
            f"{row['tile']}: {row['s']:.3f} s, peak {row['peak MB']:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train", help="training speed (bench_training)")
    t.add_argument("--out", default="/tmp/artconv_bench_fast")
    t.add_argument("--minutes", type=float, default=10.0)
    t.add_argument("--steps", type=int, default=None, help="instead of --minutes' stop")
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--style-scale", type=float, default=1.0,
                   help="style image size / crop (2 with --crop 128 = the style at 256)")
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--blocks", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--precision", default="auto")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--style-weight", type=float, default=None)
    t.add_argument("--content-weight", type=float, default=None)
    t.add_argument("--tv-weight", type=float, default=None)
    t.add_argument("--temporal-weight", default="0")
    t.add_argument("--preview-every", type=int, default=100)
    q = sub.add_parser("quality", help="errors against the optimiser (bench_quality)")
    q.add_argument("--model", required=True)
    q.add_argument("--out", default="/tmp/artconv_bench_fast")
    q.add_argument("--size", type=int, default=256)
    q.add_argument("--baseline", type=int, default=0,
                   help="optimise the first N photos too (results kept in --out are reused)")
    q.add_argument("--json", action="store_true")
    i = sub.add_parser("infer", help="inference speed and memory (bench_inference)")
    i.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    i.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    i.add_argument("--widths", type=int, nargs="+", default=[32, 16])
    i.add_argument("--tiled-size", type=int, default=4096, help="0: no tiled run")
    i.add_argument("--tile", type=int, default=1024)
    i.add_argument("--tiled-precision", default="fp32")
    i.add_argument("--tiled-untiled", action="store_true",
                   help="also the untiled run at --tiled-size (its memory, for comparison)")
    i.add_argument("--eval-nets", nargs="+", default=["tiny"], choices=["tiny", "vgg19"],
                   help="loss networks of the evaluation compared with (vgg19: the style "
                        "defaults, random weights)")
    i.add_argument("--repeats", type=int, default=3)
    i.add_argument("--device", default="cpu")
    i.add_argument("--json", action="store_true")
    i.add_argument("--child", default=None, help=argparse.SUPPRESS)
    for p in (t, q, i):
        p.add_argument("--threads", type=int, default=None,
                       help="torch threads (1 is many times faster on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not NET.is_file():
        sys.exit(f"needs {NET} (the shared Tiny Darknet)")
    if args.what == "infer" and args.child:
        config = json.loads(args.child)
        if config["threads"]:
            torch.set_num_threads(config["threads"])
        print(json.dumps(_infer_child(config)))
        return
    {"train": bench_training, "quality": bench_quality, "infer": bench_inference}[args.what](args)


if __name__ == "__main__":
    main()
