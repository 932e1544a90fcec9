"""The fast engine's option record: `artconv style PHOTO --model M`, `artconv batch fast`,
manifests, presets and the studio read it. No torch here, so `--help` stays fast.

A trained network needs no loss network, so the VGG fields every engine inherits are kept
out of the CLI and the recipe (`cli=False`); the fields left share their names and meanings
with `StyleOptions`, which is what lets `artconv style --model` hand its flags over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from artconv.errors import ArtconvError
from artconv.options import CoreOptions, opt

# pytorch/examples' published models, by name (`artconv.fast.pretrained` fetches them).
PUBLISHED_MODELS = ("candy", "mosaic", "rain-princess", "udnie")


def _hidden(default: object) -> object:
    return opt(default, "Not used by a trained network.", cli=False)


@dataclass
class FastOptions(CoreOptions):
    """Everything `artconv style --model`, `artconv.stylize(model=)` and batch jobs accept."""

    model: str = opt(
        "", "A trained style network: a .safetensors file from `artconv train`, a "
        "pytorch/examples .pth, or a published model's name (candy, mosaic, rain-princess, "
        "udnie; downloaded once).")
    size: int | None = opt(
        None, "Longest side of the output in px (default: the photo's own size).", min=16,
        short="-s")
    tile: int = opt(
        0, "Run the network tile by tile, cores of about this many px per side, in the memory "
        "of one tile plus the output; exact (each instance norm's statistics are gathered "
        "over all tiles first, so the result equals the untiled one). 0 = never tile.", min=0)
    preserve_colors: Literal["none", "luminance"] = opt(
        "none", "Keep the photo's colours: luminance = the network's luminance with the "
        "photo's chroma (Gatys et al. 2017).")
    per_pass: int = opt(
        0, "Photos per forward pass (0 = all the photos of one call, e.g. a batch's "
        "--batch-size); lower it to cap memory.", min=0)
    bit_depth: int = opt(8, "Bits per channel of the output picture: 16 for print (PNG and "
                            "TIFF only).", min=8, max=16)
    arch: Literal["vgg16", "vgg19"] = _hidden("vgg19")  # type: ignore[assignment]
    weights: str = _hidden("imagenet")  # type: ignore[assignment]
    preprocess: Literal["auto", "torchvision", "caffe"] = _hidden("auto")  # type: ignore[assignment]
    pooling: Literal["max", "avg", "strided", "none"] = _hidden("max")  # type: ignore[assignment]
    avg_rescale: bool = _hidden(False)  # type: ignore[assignment]
    seamless: bool = _hidden(False)  # type: ignore[assignment]
    backbone: str | None = _hidden(None)  # type: ignore[assignment]
    seed: int = _hidden(0)  # type: ignore[assignment]
    compile: bool = _hidden(False)  # type: ignore[assignment]

    def check(self) -> None:
        super().check()
        if self.bit_depth not in (8, 16):
            raise ArtconvError(f"--bit-depth {self.bit_depth}: 8 or 16")
        if self.tile and self.tile < 64:
            raise ArtconvError(f"--tile {self.tile}: at least 64 px (or 0: no tiling)")
