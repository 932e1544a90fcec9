"""Loss scales on a network that is not VGG: how far the result gets towards its targets with
`--loss-scale auto` (relative losses, the default with --backbone) and with the old fixed
weights (`--loss-scale network`), and whether a larger --style-weight changes the strength.

    python benchmarks/bench_loss_scale.py                      # 256 px, default iterations
    python benchmarks/bench_loss_scale.py --size 128 --iterations 100    # quick look

Tiny Darknet (the ImageNet-trained network in ../shared/models/tiny_darknet), style layers
lrelu1,lrelu2,lrelu4,lrelu8,lrelu12, content lrelu10, chelsea_cat x van Gogh, L-BFGS.
After each run it prints the relative style error |G - A|^2 / |A|^2 (G the result's Gram,
A the style's, averaged over the style layers) and the relative content error
|F - P|^2 / |P|^2 at lrelu10. Target (issue 13): style <= 0.05 and content < 0.5 with the
auto defaults. `--out DIR` saves each result as a PNG to look at.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from artconv.io.images import load_image, resize_to, to_pil  # noqa: E402
from artconv.losses import functional as losses  # noqa: E402
from artconv.style import StyleOptions, StyleTransfer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
NET = SHARED / "models" / "tiny_darknet" / "load.py"
CONTENT = SHARED / "images" / "content" / "chelsea_cat.png"
STYLE = SHARED / "images" / "style" / "vangogh_starry_night.jpg"
STYLE_LAYERS = ("lrelu1", "lrelu2", "lrelu4", "lrelu8", "lrelu12")
CONTENT_LAYERS = ("lrelu10",)


@torch.no_grad()
def errors(st: StyleTransfer, result: torch.Tensor, content: torch.Tensor,
           style: torch.Tensor, size: int) -> tuple[float, float, list[float]]:
    """Relative style error (mean over layers, and per layer) and relative content error of
    `result` (1,3,H,W), measured with the run's own network at the output size."""
    targets = st.style_targets([style], size)
    feats = st.net.features(result, [*STYLE_LAYERS, *CONTENT_LAYERS])
    per_layer = []
    for name in STYLE_LAYERS:
        a = targets.layers[name]
        g = losses.gram(feats[name].float())
        per_layer.append(float((g - a).square().sum() / a.square().sum()))
    c = resize_to(content[None], tuple(result.shape[-2:]))
    p = st.net.features(c, CONTENT_LAYERS)[CONTENT_LAYERS[0]].float()
    f = feats[CONTENT_LAYERS[0]].float()
    content_err = float((f - p).square().sum() / p.square().sum())
    return sum(per_layer) / len(per_layer), content_err, per_layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=None,
                    help="L-BFGS evaluations (default: StyleOptions' default)")
    ap.add_argument("--style-loss", default="gram", choices=["gram", "w2"])
    ap.add_argument("--runs", default="auto,auto:x10,auto:x100,network,network:x10,"
                    "network:x100", help="SCALE[:xFACTOR] list (style weight x FACTOR)")
    ap.add_argument("--out", type=Path, default=None, help="save the results here as PNGs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not NET.is_file():
        sys.exit(f"needs {NET} (the shared Tiny Darknet)")
    torch.manual_seed(0)
    base = StyleOptions(backbone=f"{NET}:build", size=args.size, style_layers=STYLE_LAYERS,
                        content_layers=CONTENT_LAYERS, style_loss=args.style_loss,
                        precision="fp32", device="cpu" if not torch.cuda.is_available()
                        else "auto")
    if args.iterations is not None:
        base = base.replace(iterations=(args.iterations,))
    content, style = load_image(CONTENT), load_image(STYLE)
    print(f"# {machine()}")
    print(f"# tiny_darknet, {args.size} px, {base.iterations[0]} L-BFGS evaluations, "
          f"{args.style_loss}")
    print(f"{'run':<14} {'content w':>10} {'style w':>10} {'style err':>10} "
          f"{'content err':>11} {'seconds':>8}  per-layer style err")
    rows = []
    fx = None
    for run in args.runs.split(","):
        scale, _, factor = run.partition(":x")
        opts = base.replace(loss_scale=scale)
        st = StyleTransfer(opts, extractor=fx)
        fx = st.fx
        if factor:
            opts = opts.replace(style_weight=st.weights.style * float(factor))
            st = StyleTransfer(opts, extractor=fx)
        start = time.perf_counter()
        result = st.run(content[None], [style])
        seconds = time.perf_counter() - start
        s_err, c_err, per_layer = errors(st, result, content, style, args.size)
        rows.append({"run": run, "content_weight": st.weights.content,
                     "style_weight": st.weights.style, "style_error": s_err,
                     "content_error": c_err, "style_error_per_layer": per_layer,
                     "seconds": seconds})
        print(f"{run:<14} {st.weights.content:>10.3g} {st.weights.style:>10.3g} "
              f"{s_err:>10.4f} {c_err:>11.4f} {seconds:>8.1f}  "
              + " ".join(f"{e:.3f}" for e in per_layer), flush=True)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            to_pil(result[0]).save(args.out / f"{run.replace(':', '_')}.png")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
