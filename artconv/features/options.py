"""The features engine's option record (no torch here: `artconv features --help` is fast)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from artconv.errors import ArtconvError
from artconv.options import MAX_MEMORY_GIB, CoreOptions, opt


@dataclass
class FeatureOptions(CoreOptions):
    """Options of `artconv features` / `pixel_features` (CLI flags are generated from these)."""

    layers: tuple[str, ...] = opt(
        ("relu1_2", "relu2_2", "relu3_1", "relu4_1"),
        "Layers whose maps are brought to pixel resolution and concatenated, in this order.",
        short="-l")
    size: int | None = opt(
        None, "Resize so the longest side is this many px (default: the file's own size).",
        min=1, short="-s")
    upsample: Literal["bilinear", "nearest", "none"] = opt(
        "bilinear", "How maps coarser than the image reach its pixels: bilinear, nearest "
        "(blocks), or none (each layer kept at its own resolution; with --pooling none every "
        "map is already full size and is never interpolated).")
    dtype: Literal["float32", "float16"] = opt(
        "float32", "Dtype of the stored features (the network itself runs in --precision).")
    tile: int = opt(
        0, "Tile side in px for large images, rounded up to the deepest layer's stride; "
        "0 = auto from --max-memory.", min=0)
    max_memory: float = opt(
        2.0, "GiB one forward pass may use; larger images run as overlapping tiles that give "
        "the whole-image result.", gt=0, max=MAX_MEMORY_GIB)
    memmap: Literal["auto", "always", "never"] = opt(
        "auto", "Build a .npy output memory-mapped on disk: auto = when it would take more "
        "than half the available RAM.")
    pca_shared: bool = opt(
        False, "With several images: fit one PCA basis on all of them, so a colour means the "
        "same in every picture.")
    similar_to: tuple[int, ...] = opt(
        (), "X,Y: cosine similarity of every pixel to pixel (X, Y) of the input file, written "
        "as a heat map (-o heat.png).")

    def check(self) -> None:
        super().check()
        if not self.layers:
            raise ArtconvError("--layers: give at least one layer")
        if self.similar_to and len(self.similar_to) != 2:
            raise ArtconvError(f"--similar-to {','.join(map(str, self.similar_to))}: "
                               "expected X,Y")
