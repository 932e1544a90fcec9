"""Feature gallery: what several layers "see", as PCA pictures (the 3 strongest directions of
each layer's per-pixel features shown as red, green, blue) side by side, one row per pooling
mode, so you can compare what pooling does to them:

* max (as trained), coarse maps brought back to pixels bilinearly: smooth but blurry;
* none (a-trous): every layer computed at every pixel, nothing interpolated: sharp;
* strided (optional): pools replaced by stride-2 convolutions: aliased.

    python samples/feature_gallery.py photo.jpg -o gallery.png --layers relu1_2,relu3_1,relu4_1

Try --modes max,none,strided. With an own network name its layers, e.g.
--backbone tiny_darknet/load.py:build --layers lrelu2,lrelu6,lrelu10.
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw, ImageFont

import artconv
from artconv.features import FeatureOptions
from artconv.features.pca import fit_pca, pca_rgb, sample_pixels
from artconv.io.images import load_image, to_pil
from artconv.nets.extractor import FeatureExtractor


def label(image: Image.Image, text: str) -> Image.Image:
    # Drawn over the cell, so the grid is exactly rows x layers cells of the image's size.
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, image.height // 16))
    box = draw.textbbox((3, 3), text, font=font, anchor="lt")
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((3, 3), text, fill=(255, 255, 255), font=font, anchor="lt")
    return image


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("-o", "--output", default="gallery.png")
    p.add_argument("--layers", default="relu1_2,relu3_1,relu4_1")
    p.add_argument("--modes", default="max,none", help="pooling modes, one row each "
                   "(max, avg, strided, none)")
    p.add_argument("--no-labels", action="store_true")
    p.add_argument("--weights", default="imagenet", help="imagenet, caffe, a file or random")
    p.add_argument("--backbone", help="FILE.py:FUNCTION, an own network instead of VGG")
    p.add_argument("--size", type=int, default=512, help="longest side (none mode costs "
                   "~50x max's compute and memory; big images are tiled automatically)")
    args = p.parse_args(argv)

    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    image = load_image(args.image, args.size)  # once, so every row sees the same pixels
    h, w = image.shape[-2:]
    grid = Image.new("RGB", (len(layers) * w, len(modes) * h))
    for row, mode in enumerate(modes):
        # Pooling rewires the network, so each row needs its own extractor; one forward
        # pass per row then gives all its layers, concatenated along channels.
        fx = FeatureExtractor.from_options(
            FeatureOptions(weights=args.weights, backbone=args.backbone, pooling=mode))
        feats = artconv.pixel_features(image, layers, pooling=mode, extractor=fx)
        start = 0
        for col, layer in enumerate(layers):
            block = feats[start:start + fx.channels(layer)]
            start += fx.channels(layer)
            # A basis per cell: each picture uses its whole colour range for its own layer,
            # so compare structure (detail, blur, aliasing) between rows, not exact hues.
            cell = to_pil(pca_rgb(block, fit_pca(sample_pixels(block))))
            upsample = "" if mode == "none" else " + bilinear"
            if not args.no_labels:
                cell = label(cell, f"{layer}  {mode}{upsample}")
            grid.paste(cell, (col * w, row * h))
    grid.save(args.output)
    print(f"wrote {args.output} ({len(modes)} rows x {len(layers)} layers, "
          f"{grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
