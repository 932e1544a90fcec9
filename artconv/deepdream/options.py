"""The dream engine's option record (no torch here: `artconv dream --help` starts fast)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from artconv.errors import ArtconvError
from artconv.options import CoreOptions, opt

RANKINGS = ("strongest", "weakest", "random")


@dataclass(frozen=True)
class ChannelSpec:
    """One layer's channel request: explicit indices, or a ranking of K channels."""

    layer: str | None  # None: the last of --layers
    channels: tuple[int, ...] = ()
    ranking: str | None = None
    k: int = 0

    def describe(self) -> str:
        what = f"{self.ranking}:{self.k}" if self.ranking else ",".join(map(str, self.channels))
        return f"{self.layer}:{what}" if self.layer else what


def parse_channels(tokens: Sequence[str]) -> list[ChannelSpec]:
    """`("relu4_2:12", "45", "relu5_1:strongest:8")` -> specs (syntax only).

    The CLI splits `relu4_2:12,45` at the comma into two tokens, so a bare number continues
    the previous layer's list; tokens given with commas inside (the API) are split here."""
    specs: list[ChannelSpec] = []
    for token in (t for item in tokens for t in str(item).split(",") if t.strip()):
        parts = [p.strip() for p in str(token).split(":")]
        layer: str | None = None
        if parts[0] not in RANKINGS and not _is_int(parts[0]):
            layer, parts = parts[0], parts[1:]
        if len(parts) == 2 and parts[0] in RANKINGS and _is_int(parts[1]):
            if int(parts[1]) < 1:
                raise ArtconvError(f"--channels {token!r}: {parts[0]}:K needs K >= 1")
            specs.append(ChannelSpec(layer, (), parts[0], int(parts[1])))
        elif len(parts) == 1 and _is_int(parts[0]):
            index = int(parts[0])
            if layer is None and specs and specs[-1].ranking is None:
                specs[-1] = ChannelSpec(specs[-1].layer, specs[-1].channels + (index,))
            else:
                specs.append(ChannelSpec(layer, (index,)))
        else:
            raise ArtconvError(f"--channels {token!r}: expected LAYER:N[,N...] or "
                               f"LAYER:strongest|weakest|random:K")
    return specs


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()



@dataclass
class DreamOptions(CoreOptions):
    """Everything `artconv dream`, `artconv.dream()` and batch jobs accept."""

    layers: tuple[str, ...] = opt(
        ("relu4_2", "relu5_1"), "Layers whose activations are amplified (mean squared "
        "activation, each normalised by its value on the input).", short="-l")
    layer_weights: tuple[float, ...] = opt(
        (), "Weight of each --layers entry, same order (default 1 each).", min=0)
    channels: tuple[str, ...] = opt(
        (), "Amplify chosen channels instead of whole layers: LAYER:12,45 or "
        "LAYER:strongest:K / weakest:K / random:K (ranked on the input; random uses --seed). "
        "LAYER may be left out for the last of --layers.", short="-c")
    guide: str | None = opt(
        None, "Guide image: each position moves toward its best-matching guide feature at "
        "--layers (google/deepdream's guided dream).")
    objective: Callable[..., Any] | None = opt(
        None, "API only: a function of the captured maps {layer: tensor} to maximise "
        "(maps of --layers; an artconv.deepdream.objectives.Objective brings its own).", cli=False)
    mask: str | None = opt(
        None, "Dream only inside this mask: a grey-level image (white = dream here, black = "
        "keep the input exactly, grey = partly), resized to the image; its aspect ratio "
        "must match the image's within 1%.")
    mask_feather: float = opt(
        8.0, "Soften the --mask edge by a Gaussian blur of this radius in px at the output "
        "size (sigma = radius / 3, cut off at the radius, so the dream reaches at most this "
        "far beyond the white region; 0 = a hard edge).", min=0, max=1000)
    size: int | None = opt(None, "Resize the input so its longest side is SIZE px "
                           "(default: keep its size).", min=1, short="-s")
    octaves: int = opt(4, "Number of scales, dreamed small to large.", min=1, max=32)
    octave_scale: float = opt(1.4, "Size ratio between octaves.", gt=1.0, max=4.0)
    steps: int = opt(10, "Gradient steps per octave.", min=1)
    step_size: float = opt(0.006, "Step per iteration: mean absolute change of a pixel, in "
                           "units of the [0, 1] range (0.006 = 1.5 of 255).", gt=0, max=1)
    jitter: int = opt(32, "Random roll of up to this many px before each step, rolled back "
                      "after, so the network's grid never imprints.", min=0)
    lap_levels: int = opt(0, "Normalise the gradient per band of a Laplacian pyramid of "
                          "this many levels (smoother, larger patterns; 0 = off).",
                          min=0, max=12)
    scale_jitter: float = opt(0.0, "Random rescale by up to this fraction each step "
                              "(transformation robustness; 0 = off).", min=0, max=0.5)
    rotate_jitter: float = opt(0.0, "Random rotation by up to this many degrees each step.",
                               min=0, max=180)
    tile: int = opt(1024, "Images larger than this (px per side) get their gradient "
                    "tile by tile, in the memory of one tile (0 = never tile).", min=0)
    tile_margin: int | None = opt(
        None, "Context px around each tile (default: the deepest layer's receptive field, "
        "so tiled = untiled; 0 = none, seams hidden by the random roll).", min=0)
    preserve_colors: bool = opt(False, "Keep the input's colours: only brightness "
                                "(YIQ luma) is dreamed.")
    frames: int = opt(0, "Zoom video: write this many frames (dream, zoom, dream again) "
                      "into the output folder; existing frames are kept and continued.",
                      min=0)
    zoom: float = opt(1.05, "Zoom factor from one frame to the next.", gt=0, max=4)
    rotate: float = opt(0.0, "Rotation in degrees from one frame to the next.",
                        min=-180, max=180)
    gif: bool = opt(False, "With --frames: also write the frames as FOLDER.gif.")

    def check(self) -> None:
        super().check()
        if not self.layers and self.objective is None:
            raise ArtconvError("--layers: name at least one layer")
        if self.layer_weights and len(self.layer_weights) != len(self.layers):
            raise ArtconvError(f"--layer-weights: {len(self.layer_weights)} weights for "
                               f"{len(self.layers)} --layers")
        parse_channels(self.channels)
