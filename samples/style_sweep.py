"""Style-weight sweep: stylise one content image at several style weights and lay the results
side by side in ONE grid image, each cell labelled with its weight.

    python samples/style_sweep.py photo.jpg starry.jpg -o sweep.png --style-weights 1e3,1e4,1e5

On CPU, try it small: --size 192 --iterations 50, or --weights random for a smoke test. With an
own network give its layer names too, e.g. --backbone tiny_darknet/load.py:build
--content-layers lrelu10 --style-layers lrelu1,lrelu2,lrelu4,lrelu8,lrelu12.
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw, ImageFont

import artconv
from artconv.nets.extractor import FeatureExtractor
from artconv.progress import Progress
from artconv.style import StyleOptions


def label(image: Image.Image, text: str) -> Image.Image:
    # Drawn over the cell (not in a strip beside it) so every cell keeps the result's size.
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, image.height // 16))
    box = draw.textbbox((3, image.height - 3), text, font=font, anchor="ls")
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((3, image.height - 3), text, fill=(255, 255, 255), font=font, anchor="ls")
    return image


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("-o", "--output", default="sweep.png")
    p.add_argument("--style-weights", default="1e3,1e4,1e5",
                   help="comma-separated; one cell per value (the default style weight is 5e3)")
    p.add_argument("--columns", type=int, default=0, help="cells per row (0 = all in one row)")
    p.add_argument("--no-labels", action="store_true")
    p.add_argument("--weights", default="imagenet", help="imagenet, caffe, a file or random")
    p.add_argument("--backbone", help="FILE.py:FUNCTION, an own network instead of VGG")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--content-layers", help="default relu4_2")
    p.add_argument("--style-layers", help="default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    args = p.parse_args(argv)

    weights = [w.strip() for w in args.style_weights.split(",") if w.strip()]
    # Build the network once: every run of the sweep shares it instead of reloading it.
    fx = FeatureExtractor.from_options(StyleOptions(weights=args.weights, backbone=args.backbone))
    # None means "not given": stylize() then keeps its default for that option.
    given = {"size": args.size, "iterations": args.iterations,
             "content_layers": args.content_layers, "style_layers": args.style_layers}
    cells = []
    with Progress(transient_tasks=True) as progress:
        sweep = progress.task("sweep", total=len(weights))
        for w in weights:
            # The same seed for every cell, so only the style weight differs between them.
            out = artconv.stylize(args.content, args.style, extractor=fx, progress=progress,
                                  style_weight=float(w), **given)
            cells.append(out if args.no_labels else label(out, f"style {w}"))
            sweep.update(style_weight=w)

    columns = args.columns or len(cells)
    rows = -(-len(cells) // columns)
    cw, ch = cells[0].size
    grid = Image.new("RGB", (columns * cw, rows * ch), (24, 24, 24))
    for i, cell in enumerate(cells):
        grid.paste(cell, ((i % columns) * cw, (i // columns) * ch))
    grid.save(args.output)
    print(f"wrote {args.output} ({len(cells)} cells, {grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
