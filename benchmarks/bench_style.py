"""Style transfer speed on this machine: seconds per L-BFGS evaluation and per Adam step, in
fp32 and bf16, with peak memory and the achieved conv GFLOP/s as a fraction of the measured
matmul peak of the same precision.

    python benchmarks/bench_style.py --sizes 256,512 [--json]
    python benchmarks/bench_style.py --quality --sizes 256     # bf16 vs fp32 final loss

Targets (the lead's machines, VGG19, default layers, 512 px): fp32 <= 1.3 s per evaluation,
bf16 <= 0.40 s. Speed does not depend on the weights, so `--weights random` (the default,
offline) times the same network; use `--weights imagenet` for the quality check.
One L-BFGS evaluation / Adam step = network forward to the deepest layer, Gram/W2/TV losses
in fp32, backward to the image, the optimiser update. The conv FLOPs counted are the forward
and the input-gradient backward (no weight gradients: the network is frozen).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    conv_gflop,
    machine,
    matmul_peak_gflops,
    peak_memory_mb,
    report,
    reset_peak,
    time_it,
)

from artconv.device import resolve_device  # noqa: E402
from artconv.io.images import load_image  # noqa: E402
from artconv.nets.pooling import pink_noise  # noqa: E402
from artconv.style import StyleOptions, StyleTransfer  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def engine(args: argparse.Namespace, precision: str, **changes: Any) -> StyleTransfer:
    layers = {k: tuple(v.split(",")) for k, v in (("content_layers", args.content_layers),
                                                  ("style_layers", args.style_layers)) if v}
    opts = StyleOptions(arch=args.arch, weights=args.weights, pooling=args.pooling,
                        backbone=args.backbone, style_loss=args.style_loss, device=args.device,
                        precision=precision, **layers, **changes)
    with warnings.catch_warnings():  # --weights random warns that results are noise
        warnings.simplefilter("ignore")
        return StyleTransfer(opts)


def images(size: int, device: torch.device, args: argparse.Namespace | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Content and style: the --content/--style photos if given (square-cropped to `size`),
    else stand-ins with natural images' 1/f spectrum."""
    if args is not None and args.content and args.style:
        from artconv.io.images import resize_to

        pair = [resize_to(load_image(p), (size, size)) for p in (args.content, args.style)]
        return pair[0][None].to(device), pair[1].to(device)
    return pink_noise(size, seed=1).to(device), pink_noise(size, seed=2)[0].to(device)


def step_fn(st: StyleTransfer, size: int, optimizer: str):
    """One optimiser step as the engine's loop does it (see artconv.style.optimise.ScaleRun)."""
    content, style = images(size, st.device)
    objective = st.objective(content, st.style_targets([style], size))
    x = content.clone().requires_grad_(True)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam([x], lr=0.02, betas=(0.9, 0.99))
    else:
        opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=100, tolerance_grad=-1,
                                tolerance_change=-1)

    def step() -> None:
        x.grad = None
        parts = objective(x)
        parts.sum().backward()
        if optimizer == "adam":
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        else:
            loss = float(parts.detach().sum())  # L-BFGS reads the loss each evaluation
            opt.step(lambda: loss)

    return step


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = resolve_device(args.device)
    rows = []
    peaks = {p: matmul_peak_gflops(device, DTYPES[p]) for p in args.precisions}
    for size in args.sizes:
        for precision in args.precisions:
            st = engine(args, precision)
            deepest = st.fx.check_layers([*st.options.content_layers,
                                          *st.options.style_layers])[-1]
            gflop = conv_gflop(st.fx, (size, size), deepest)
            row: dict[str, Any] = {"size": size, "precision": precision}
            reset_peak(device)
            for optimizer in ("lbfgs", "adam"):
                seconds = time_it(step_fn(st, size, optimizer), device, args.repeats)
                row[f"{optimizer}_s"] = seconds
                if optimizer == "lbfgs":
                    row["gflops"] = gflop / seconds
                    row["of_peak"] = gflop / seconds / peaks[precision]
            row["peak_mb"] = peak_memory_mb(device)
            row["conv_gflop"] = gflop
            row["matmul_peak_gflops"] = peaks[precision]
            rows.append(row)
    return rows


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same L-BFGS run in fp32 and bf16; both final images scored by the fp32 loss."""
    device = resolve_device(args.device)
    rows = []
    for size in args.sizes:
        content, style = images(size, device, args)
        reference = engine(args, "fp32", size=size, iterations=(args.evals,))
        scorer = reference.objective(content, reference.style_targets([style], size))
        finals = {}
        for precision in ("fp32", "bf16"):
            st = engine(args, precision, size=size, iterations=(args.evals,))
            out = st.run(content, [style])
            with torch.no_grad():
                finals[precision] = float(scorer(out).sum())
        rel = abs(finals["bf16"] - finals["fp32"]) / finals["fp32"]
        rows.append({"size": size, "evals": args.evals, "loss_fp32": finals["fp32"],
                     "loss_bf16": finals["bf16"], "rel_diff": rel, "within_5pct": rel <= 0.05})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256,512", help="comma-separated square sizes")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.add_argument("--quality", action="store_true", help="bf16 vs fp32 final loss instead")
    p.add_argument("--evals", type=int, default=100, help="L-BFGS evaluations (--quality)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--weights", default="random")
    p.add_argument("--pooling", default="max")
    p.add_argument("--style-loss", default="gram", choices=["gram", "w2"])
    p.add_argument("--backbone", default=None, help="own FILE.py:FUNCTION (e.g. a real net)")
    p.add_argument("--content-layers", default=None, help="comma-separated (own backbone)")
    p.add_argument("--style-layers", default=None, help="comma-separated (own backbone)")
    p.add_argument("--content", default=None, help="content photo (--quality)")
    p.add_argument("--style", default=None, help="style painting (--quality)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.precisions = args.precisions.split(",")
    if not args.json:
        print(machine())
    rows = quality(args) if args.quality else speed(args)
    report(rows, args.json)


if __name__ == "__main__":
    main()
