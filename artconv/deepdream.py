"""Deep Dream: gradient ascent on the activations of chosen layers of the feature core.

    from artconv import dream
    dream("cat.jpg", layers=("relu4_2",), octaves=4).save("cat_dream.png")

    dreamer = Dreamer(DreamOptions(layers=("relu5_1",)), extractor=fx, callback=show)
    out = dreamer.run(image)                      # (3, H, W) in [0, 1]

Per octave (small to large) the image is a sharp copy of the input at that size plus the
dream *detail* carried up from the octave below (google/deepdream's re-injection). Each step
rolls the image by a random offset, takes the gradient of the objective (tile by tile above
`tile` px, see artconv.tiling), rolls it back, optionally normalises it per Laplacian band,
divides it by its mean magnitude and takes one step of `step_size`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from artconv.color import luminance, with_luminance
from artconv.core import FeatureExtractor, describe
from artconv.device import autocast, fp32, memory_format, resolve_device, resolve_precision
from artconv.errors import ArtconvError
from artconv.imageio import (
    ImageSource,
    atomic_path,
    load_image,
    resize_longest,
    resize_to,
    save_image,
    to_pil,
)
from artconv.objectives import (
    Maps,
    Objective,
    channel_mean,
    custom,
    guided,
    layer_l2,
    parse_channels,
    select_channels,
)
from artconv.options import CoreOptions, opt
from artconv.progress import Progress, Task_, ensure
from artconv.recipe import make_recipe
from artconv.tiling import Tile, tile_grid, tiled_gradient
from artconv.weights import ArtconvWarning

GUIDE_FEATURES_MAX = 8192  # guide positions kept per layer: bounds the matching matmul
# Layer scales and channel ranks are measured on the input resized to at most this side:
# bounded memory, and the same objective whether or not the dream is tiled.
REFERENCE_SIDE = 512


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
    objective: Callable[[Maps], torch.Tensor] | None = opt(
        None, "API only: a function of the captured maps {layer: tensor} to maximise "
        "(maps of --layers; an artconv.objectives.Objective brings its own).", cli=False)
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


@dataclass(frozen=True)
class StepInfo:
    """What a per-step callback sees. `image` is the current octave's (1, 3, h, w) image."""

    frame: int  # 0 outside zoom videos, else 1-based
    octave: int  # 1-based, among the octaves kept
    octaves: int
    step: int  # 1-based within the octave
    steps: int
    objective: float
    image: torch.Tensor


class DreamInterrupted(KeyboardInterrupt):
    """Ctrl-C while dreaming; `image` is the (3, H, W) result so far, at full size, or None
    when no step had been taken yet (there is nothing worth saving)."""

    def __init__(self, image: torch.Tensor | None) -> None:
        super().__init__("dream interrupted")
        self.image = image


class Dreamer:
    """The dream engine on one feature extractor; reusable across images (a batch)."""

    def __init__(self, options: DreamOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, progress: Progress | None = None,
                 callback: Callable[[StepInfo], bool | None] | None = None,
                 **overrides: Any) -> None:
        """`callback(info)` runs after every step; returning False stops the dream."""
        options = options or DreamOptions()
        self.options = options.replace(**overrides) if overrides else options.validated()
        o = self.options
        self.device = resolve_device(o.device)
        self.precision = resolve_precision(o.precision, self.device)
        self.memory_format = memory_format(self.device, self.precision)
        self.fx = extractor if extractor is not None else FeatureExtractor.from_options(o)
        # Weights in the crops' format, or every convolution converts them again each step.
        self.fx.to(self.device, memory_format=self.memory_format)
        self.progress = ensure(progress)
        self.callback = callback
        self.channel_specs = parse_channels(o.channels)
        default_layer = o.layers[-1] if o.layers else None
        self._channel_layers = [spec.layer or default_layer for spec in self.channel_specs]
        if isinstance(o.objective, Objective):
            wanted = list(o.objective.layers)
        else:
            wanted = [*o.layers, *self._channel_layers]
        self.layers = self.fx.check_layers(wanted)
        for spec, layer in zip(self.channel_specs, self._channel_layers, strict=True):
            if spec.ranking is None:  # range errors now, not after the first octave
                select_channels(spec, layer, self.fx.channels(layer))
        if o.guide and not Path(o.guide).is_file():
            raise ArtconvError(f"--guide {o.guide}: " + (
                "is a folder, not an image file" if Path(o.guide).is_dir() else "no such file"))
        deepest = {i.name: i for i in self.fx.describe(256)}[self.layers[-1]]
        self.align = deepest.stride
        self.margin = deepest.receptive_field - 1 if o.tile_margin is None else o.tile_margin
        self.min_size = self.fx.min_size(self.layers)
        if 0 < o.tile < self.min_size:
            raise ArtconvError(f"--tile {o.tile}: smaller than {self.min_size} px, the smallest "
                               f"input {self.layers[-1]} can see (use --tile {self.min_size} "
                               "or more, or --tile 0 for no tiling)")
        self._tile_cache: dict[tuple[int, int], tuple[list[Tile], list[float]]] = {}

    # -- the objective ---------------------------------------------------------------------
    def prepare(self, image: ImageSource) -> Objective:
        """The objective for dreaming `image`: each layer's scale and the ranked channels are
        measured on it (resized to at most REFERENCE_SIDE px, so memory stays bounded)."""
        o = self.options
        if o.objective is not None:
            return custom(o.objective, self.layers)
        reference = self._reference(self._to_batch(image))
        with torch.no_grad(), autocast(self.device, self.precision):
            maps = self.fx(reference, self.layers)
        with fp32():
            mean_sq = {k: max(float(v.float().square().mean()), 1e-12) for k, v in maps.items()}
            channel_means = {k: v.float().mean(dim=(0, 2, 3)) for k, v in maps.items()}
        del maps
        chosen: dict[str, set[int]] = {}
        for spec, layer in zip(self.channel_specs, self._channel_layers, strict=True):
            chosen.setdefault(layer, set()).update(select_channels(
                spec, layer, self.fx.channels(layer), channel_means[layer], o.seed))
        guide = self._guide_features(max(reference.shape[-2:])) if o.guide else {}
        weights = dict(zip(o.layers, o.layer_weights or [1.0] * len(o.layers), strict=True))
        terms = []
        for layer in self.layers:
            weight, ms = weights.get(layer, 1.0), mean_sq[layer]
            if layer in chosen:
                terms.append(weight * channel_mean(layer, sorted(chosen[layer]), math.sqrt(ms)))
            elif guide:
                terms.append(weight * guided(layer, guide[layer], ms * guide[layer].shape[0]))
            else:
                terms.append(weight * layer_l2(layer, ms))
        return sum(terms)  # type: ignore[return-value]

    def evaluate(self, image: torch.Tensor, objective: Objective) -> float:
        """The objective's value at `image` (no step taken)."""
        with torch.no_grad():
            x = self._to_batch(image)
            tiles, weights = self._tiles(x.shape[-2:])
            return sum(float(self._score(objective, t.crop(x))) * w * t.core_area / t.ext_area
                       for t, w in zip(tiles, weights, strict=True))

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        side = min(max(x.shape[-2:]), max(REFERENCE_SIDE, self.min_size))
        return resize_longest(x, side) if side != max(x.shape[-2:]) else x

    def _guide_features(self, side: int) -> dict[str, torch.Tensor]:
        try:
            guide = load_image(self.options.guide, size=max(side, self.min_size))  # type: ignore[arg-type]
        except ArtconvError as exc:
            raise ArtconvError(f"--guide {exc}") from None
        with torch.no_grad(), autocast(self.device, self.precision):
            maps = self.fx(self._to_batch(guide), self.layers)
        out = {}
        gen = torch.Generator().manual_seed(self.options.seed)
        for name, m in maps.items():
            feats = m[0].float().flatten(1)  # (C, M)
            if feats.shape[1] > GUIDE_FEATURES_MAX:
                keep = torch.randperm(feats.shape[1], generator=gen)[:GUIDE_FEATURES_MAX]
                feats = feats[:, keep.to(feats.device)]
            out[name] = feats
        return out

    # -- one step ----------------------------------------------------------------------------
    def gradient(self, image: torch.Tensor, objective: Objective, *,
                 shift: tuple[int, int] = (0, 0),
                 warp: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(d objective / d image, objective) at `image` rolled by `shift` (and warped), with
        the gradient mapped back onto the unrolled image."""
        x = self._to_batch(image)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(-2, -1))
        tiles, weights = self._tiles(x.shape[-2:])

        def score(crop: torch.Tensor) -> torch.Tensor:
            return self._score(objective, crop)

        if warp is None:
            grad, value = tiled_gradient(score, x, tiles, weights)
        else:
            with torch.enable_grad():
                src = x.detach().requires_grad_(True)
                warped = warp(src)
                grad_w, value = tiled_gradient(score, warped.detach(), tiles, weights)
                (grad,) = torch.autograd.grad(warped, src, grad_w)
        if any(shift):
            grad = torch.roll(grad, shifts=(-shift[0], -shift[1]), dims=(-2, -1))
        return grad, value

    def step(self, image: torch.Tensor, objective: Objective, *,
             shift: tuple[int, int] | None = None, rng: torch.Generator | None = None
             ) -> tuple[torch.Tensor, float]:
        """One ascent step: (new image, objective before the step). Without `shift`, a random
        roll of up to `jitter` px is drawn from `rng`."""
        o = self.options
        rng = rng if rng is not None else torch.Generator().manual_seed(o.seed)
        if shift is None:
            shift = tuple(torch.randint(-o.jitter, o.jitter + 1, (2,), generator=rng).tolist())
        grad, value = self.gradient(image, objective, shift=shift, warp=self._random_warp(rng))
        magnitude = grad.abs().mean()
        # The step's one host sync: the objective for progress, and the mean magnitude,
        # which is non-finite exactly when some gradient entry is.
        score, size = torch.stack([value.float(), magnitude.float()]).tolist()
        if not math.isfinite(score) or not math.isfinite(size):
            raise ArtconvError(f"dream objective became non-finite ({score}); try a smaller "
                               "--step-size or --precision fp32, or check the objective")
        if o.lap_levels:
            grad = lap_normalize(grad, o.lap_levels)
            magnitude = grad.abs().mean()
        # Normalising by the mean magnitude makes step_size a pixel change, whatever the
        # layer's scale (google/deepdream's rule).
        grad = grad / magnitude.clamp_min(1e-12)
        return (self._to_batch(image) + o.step_size * grad).clamp_(0, 1), score

    def _score(self, objective: Objective, crop: torch.Tensor) -> torch.Tensor:
        crop = crop.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.precision):
            maps = self.fx(crop, objective.layers or self.layers)
        with fp32():
            return objective({k: v.float() for k, v in maps.items()}).float()

    def _random_warp(self, rng: torch.Generator
                     ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        o = self.options
        if not o.scale_jitter and not o.rotate_jitter:
            return None
        u = (torch.rand(2, generator=rng) * 2 - 1).tolist()
        scale = math.exp(u[0] * math.log1p(o.scale_jitter))
        angle = u[1] * o.rotate_jitter
        return lambda x: affine_warp(x, scale, angle)

    def _tiles(self, hw: Sequence[int]) -> tuple[list[Tile], list[float]]:
        """The tiles for an image size and each one's share of the deepest layer's positions
        (counted, not estimated from areas: edges that are not stride multiples round)."""
        key = (hw[0], hw[1])
        if key not in self._tile_cache:
            tiles = tile_grid(hw[0], hw[1], self.options.tile, self.margin, self.align,
                              self.min_size)
            work = sum(t.ext_area for t in tiles) / (hw[0] * hw[1])
            if work > 4:
                warnings.warn(f"--tile {self.options.tile} with a {self.margin} px margin of "
                              f"context (the receptive field of {self.layers[-1]}) computes "
                              f"each pixel ~{work:.0f} times; a larger --tile or a smaller "
                              "--tile-margin is faster", ArtconvWarning, stacklevel=4)
            full = self._positions(key)
            weights = [self._positions((t.ext[1] - t.ext[0], t.ext[3] - t.ext[2])) / full
                       for t in tiles]
            self._tile_cache[key] = (tiles, weights)
        return self._tile_cache[key]

    def _positions(self, hw: tuple[int, int]) -> int:
        info = describe(self.fx.net, hw, until=self.layers[-1])[-1]
        return max(1, info.height * info.width)

    # -- octaves -----------------------------------------------------------------------------
    def check_size(self, hw: Sequence[int], *, what: str | None = None, where: str = ""
                   ) -> None:
        """Refuse an image too small for the deepest layer, naming `what` (a file) and
        `where` (the option that sized it)."""
        self.fx.check_size(hw, self.layers, what=what, where=where)

    def octave_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) per octave, small to large; octaves below the network's minimum input are
        dropped with a warning."""
        o = self.options
        self.check_size((height, width))
        sizes = [(max(1, round(height / o.octave_scale ** k)),
                  max(1, round(width / o.octave_scale ** k))) for k in reversed(range(o.octaves))]
        kept = [hw for hw in sizes if min(hw) >= self.min_size]
        if len(kept) < len(sizes):
            warnings.warn(f"dropping {len(sizes) - len(kept)} of {len(sizes)} octaves smaller "
                          f"than {self.min_size} px, the minimum input for {self.layers[-1]} "
                          "(use fewer --octaves or a smaller --octave-scale)",
                          ArtconvWarning, stacklevel=3)
        return kept

    def run(self, image: ImageSource, objective: Objective | None = None, *, frame: int = 0,
            task: Task_ | None = None) -> torch.Tensor:
        """Dream `image`; returns a (3, H, W) float tensor in [0, 1] on the CPU. Ctrl-C
        raises DreamInterrupted carrying the result so far."""
        o = self.options
        original = self._to_batch(image)
        base: torch.Tensor | None = None
        img: torch.Tensor | None = None
        try:
            objective = objective or self.prepare(original)
            sizes = self.octave_sizes(*original.shape[-2:])
            rng = torch.Generator().manual_seed((o.seed + 7919 * frame) % 2**64)
            own_task = task is None  # a frames run shares one bar across frames
            task = task or self.progress.task("dream", total=len(sizes) * o.steps)
            detail: torch.Tensor | None = None
            stop = False
            for k, hw in enumerate(sizes, 1):
                base = resize_to(original, hw)  # a sharp copy of the input, never the dream
                detail = torch.zeros_like(base) if detail is None else _resize(detail, hw)
                img = (base + detail).clamp(0, 1)
                for s in range(1, o.steps + 1):
                    img, value = self.step(img, objective, rng=rng)
                    figures = {"frame": f"{frame}/{o.frames}"} if frame else {}
                    task.update(octave=f"{k}/{len(sizes)}", step=f"{s}/{o.steps}",
                                objective=value, **figures)
                    if self.callback is not None and self.callback(StepInfo(
                            frame, k, len(sizes), s, o.steps, value, img)) is False:
                        stop = True
                        break
                if stop:
                    break
                detail = img - base
        except KeyboardInterrupt:
            dreamed = None if img is None else self._full_size(original, img, base)
            raise DreamInterrupted(dreamed) from None
        if own_task:
            task.done()
        return self._full_size(original, img, base)

    def _full_size(self, original: torch.Tensor, img: torch.Tensor | None,
                   base: torch.Tensor | None) -> torch.Tensor:
        """The dream so far at the input's size: its detail added to the sharp input."""
        if img is None or base is None:
            out = original
        elif img.shape == original.shape:
            out = img
        else:
            out = (original + _resize(img - base, original.shape[-2:])).clamp(0, 1)
        if self.options.preserve_colors:
            out = keep_colors(out, original)
        return out[0].detach().float().cpu()

    # -- zoom videos ------------------------------------------------------------------------
    def frames(self, image: ImageSource, folder: str | Path, *,
               inputs: Sequence[str | Path] = ()) -> list[Path]:
        """Write `frames` frames into `folder` (frame_0001.png, ...): frame 1 is the dreamed
        input, each next one the previous frame zoomed (and rotated) and dreamed again.
        Frames already there are kept and the run continues after the last one; each frame
        is rounded to 8 bits before it is continued, so a resumed run matches an unbroken one."""
        o = self.options
        if o.frames < 1:
            raise ArtconvError("--frames: give the number of frames to write (>= 1)")
        folder = Path(folder)
        paths = frame_paths(folder, o.frames)
        done = 0
        while done < len(paths) and paths[done].is_file():
            done += 1
        if done < len(paths):
            original = self._to_batch(image)
            # Scales and ranked channels come from the input itself, not from the frame a
            # resumed run starts at, so they are the same for every frame.
            objective = self.prepare(original)
            current = original
            if done:
                current = self._to_batch(load_image(paths[done - 1]))
                if current.shape != original.shape:
                    raise ArtconvError(f"{paths[done - 1]}: frame is {current.shape[-1]}x"
                                       f"{current.shape[-2]} px but the input is "
                                       f"{original.shape[-1]}x{original.shape[-2]}; use "
                                       "another folder or the same --size")
            per_frame = len(self.octave_sizes(*original.shape[-2:])) * o.steps
            task = self.progress.task("frames", total=(len(paths) - done) * per_frame)
            for k in range(done + 1, len(paths) + 1):
                src = current if k == 1 else affine_warp(current, o.zoom, o.rotate, "bicubic")
                out = self.run(src.clamp(0, 1), objective, frame=k, task=task)
                out = out.mul(255).round().div(255)  # what the PNG holds
                save_image(out, paths[k - 1], recipe=self.recipe(inputs, frame=k),
                           inputs=inputs)
                current = self._to_batch(out)
        if o.gif:
            write_gif(paths, gif_path(folder))
        return paths

    # -- helpers ----------------------------------------------------------------------------
    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record an output carries (see artconv.recipe)."""
        if self.options.objective is not None:
            extra.setdefault("objective", getattr(self.options.objective, "name", None)
                             or getattr(self.options.objective, "__name__", "custom"))
        return make_recipe("dream", self.options, weights=self.fx.identity, inputs=inputs,
                           device=self.device, precision=self.precision, **extra)

    def _to_batch(self, image: ImageSource) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            image = load_image(image)
        x = image if image.dim() == 4 else image.unsqueeze(0)
        return x.to(self.device, torch.float32)


def frame_paths(folder: str | Path, frames: int) -> list[Path]:
    """Where a zoom video's frames go: FOLDER/frame_0001.png, ..."""
    return [Path(folder) / f"frame_{k:04d}.png" for k in range(1, frames + 1)]


def gif_path(folder: str | Path) -> Path:
    """Where `--gif` writes a zoom video's frames as one GIF: beside the folder."""
    return Path(folder).with_suffix(".gif")


# -- image operations ------------------------------------------------------------------------
def _resize(x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """Bilinear resize without clamping: dream detail is signed."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


def affine_warp(x: torch.Tensor, scale: float, degrees: float, mode: str = "bilinear"
                ) -> torch.Tensor:
    """Zoom by `scale` and rotate by `degrees` about the centre, same size, differentiable;
    the borders reflect, so no black corners enter the image."""
    h, w = x.shape[-2:]
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    # In grid_sample's [-1, 1] coordinates a pixel rotation needs the aspect ratio.
    # Made on the host, copied without a blocking transfer: this runs every jittered step.
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]],
                         dtype=x.dtype).div_(scale).to(x.device, non_blocking=True)
    grid = F.affine_grid(theta[None].expand(x.shape[0], 2, 3), list(x.shape),
                         align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out.clamp(0, 1) if mode == "bicubic" else out


def lap_normalize(grad: torch.Tensor, levels: int) -> torch.Tensor:
    """Split into Laplacian bands, scale each to unit RMS, merge: every scale of pattern gets
    the same push, as in google/deepdream's lapnorm notebook (smoother, larger patterns)."""
    bands = []
    x = grad
    for _ in range(levels):
        if min(x.shape[-2:]) < 4:
            break
        low = _blur_down(x)
        bands.append(x - _resize(low, x.shape[-2:]))
        x = low
    out = _unit_rms(x)
    for band in reversed(bands):
        out = _resize(out, band.shape[-2:]) + _unit_rms(band)
    return out


@functools.cache
def _binomial_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Cached per device: a host-to-device copy every step would block on the GPU.
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    return torch.outer(b, b).to(device, dtype)


def _blur_down(x: torch.Tensor) -> torch.Tensor:
    k = _binomial_kernel(x.device, x.dtype)
    channels = x.shape[1]
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, k.expand(channels, 1, 5, 5), stride=2, groups=channels)


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / x.square().mean().sqrt().clamp_min(1e-12)


def keep_colors(result: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """`result`'s luminance with `original`'s chroma (YIQ, as the style engine does)."""
    return with_luminance(luminance(result), original).clamp(0, 1)


def write_gif(frames: Sequence[Path], path: Path, duration_ms: int = 80) -> Path:
    """An endlessly looping GIF of the frame files, written atomically."""
    images = [Image.open(p).convert("RGB") for p in frames]
    with atomic_path(path, suffix_hint=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=0)
    return path


# -- the API ---------------------------------------------------------------------------------
def dream(image: ImageSource, options: DreamOptions | None = None, *,
          extractor: FeatureExtractor | None = None, progress: Progress | None = None,
          callback: Callable[[StepInfo], bool | None] | None = None,
          **overrides: Any) -> Image.Image:
    """Dream an image (path, PIL image, array or (3, H, W) tensor in [0, 1]) and return it as
    a PIL image. Options are DreamOptions fields, e.g. `layers=("relu4_2",), octaves=4`;
    pass `extractor=` to reuse a network across calls."""
    dreamer = Dreamer(options, extractor=extractor, progress=progress, callback=callback,
                      **overrides)
    if dreamer.options.frames:
        raise ArtconvError("frames: use artconv.dream.dream_frames(image, folder, ...) for "
                           "zoom videos")
    with dreamer.progress:
        return to_pil(dreamer.run(load_image(image, dreamer.options.size)))


def dream_frames(image: ImageSource, folder: str | Path, options: DreamOptions | None = None,
                 *, extractor: FeatureExtractor | None = None,
                 progress: Progress | None = None, **overrides: Any) -> list[Path]:
    """Write a zoom video's frames (see Dreamer.frames); resumes an interrupted run."""
    dreamer = Dreamer(options, extractor=extractor, progress=progress, **overrides)
    inputs = [image] if isinstance(image, (str, Path)) else []
    with dreamer.progress:
        return dreamer.frames(load_image(image, dreamer.options.size), folder, inputs=inputs)


__all__ = ["DreamInterrupted", "DreamOptions", "Dreamer", "StepInfo", "affine_warp", "dream",
           "dream_frames", "keep_colors", "lap_normalize"]
