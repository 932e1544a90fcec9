"""The style objective of a whole image, evaluated exactly one tile at a time.

The Gram and W2 style losses are functions of global statistics of each layer's features
(the second moment ``sum f f^T`` and, for W2, the sum ``sum f``), but their gradients are per
feature position. So a step runs the network twice over the tiles (`artconv.nets.tiling`:
cores on the deepest layer's stride grid, a margin of the receptive field - 1, so every
feature a tile owns is computed exactly as in the whole image):

1. no grad: each tile adds the statistics of the positions it owns (each position is owned
   by exactly one tile, `tiling.owned`), and its content-loss terms;
2. the style loss as a function of those statistics is small (C x C per layer), so autograd
   gives its derivative D with respect to each statistic; then per tile, with grad, the
   surrogate ``<D2, sum_owned m f f^T> + <D1, sum_owned m f>`` (plus the owned content
   terms) has at every owned position exactly the true gradient, ``m ((D2 + D2^T) f + D1)``
   (`losses.Style.gradients`). It is backpropagated to the tile's pixels and added into
   the image's gradient: margin pixels get gradient from their neighbours' positions too.

One mechanism covers Gram and W2, region masks (`m`), relative loss scales, blends and
batches, since all of them are inside the function of the statistics. TV and pixel-space
priors act on the whole image (an image-sized buffer, as the image itself). What is held
beyond one tile: the image-sized buffers (`estimate` counts them), the content targets at
their layers and the masks at each layer's grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from artconv.device import fp32
from artconv.errors import ArtconvError
from artconv.losses import functional as lf
from artconv.losses.terms import Part, Sums, style_targets
from artconv.losses.weights import LossWeights
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.geometry import walk
from artconv.nets.tiling import (
    GIB,
    FreedMemory,
    MemoryEstimate,
    Tile,
    add_crop,
    available_memory,
    largest_tile,
    network_bytes,
    owned,
    owned_context,
    pass_bytes,
    tile_grid,
)
from artconv.style.optimise import Objective, Prior, rgb
from artconv.style.options import StyleOptions
from artconv.style.targets import Net, StyleTargets, TargetMaker, _prepared

Slices = tuple[slice, slice]
Made = tuple[torch.Tensor, dict[str, torch.Tensor]]  # a tile's crop and its maps (with grad)


class TilePlan:
    """The tiles of one image size and, per layer, the positions each tile owns."""

    def __init__(self, fx: FeatureExtractor, layers: Sequence[str], hw: tuple[int, int],
                 tile: int) -> None:
        names = fx.check_layers(layers)
        deepest = names[-1]
        self.hw = (int(hw[0]), int(hw[1]))
        self.align, self.margin = owned_context(fx.net, names)
        walked = {g.name: g for g in walk(fx.net, self.hw, until=deepest)}
        self.maps = {n: (walked[n].stride, (walked[n].height, walked[n].width)) for n in names}
        off_grid = [n for n, (s, _) in self.maps.items() if self.align % s]
        if off_grid:
            raise ArtconvError(f"--tile: layer {off_grid[0]}'s stride does not divide the "
                               f"deepest layer's ({self.align}), so tiles cannot be exact; "
                               "use --tile 0")
        self.tiles: list[Tile] = tile_grid(*self.hw, tile, self.margin, self.align,
                                           fx.min_size(names), wrap=fx.seamless)
        self.owned = [{n: owned(t, s, mhw, self.hw) for n, (s, mhw) in self.maps.items()}
                      for t in self.tiles]

    def __len__(self) -> int:
        return len(self.tiles)

    def piece(self, index: int, name: str, f: torch.Tensor) -> tuple[Slices, torch.Tensor]:
        """(where in the whole map, the owned features (N,C,h,w): a view, in f's dtype) of
        tile `index`'s map `f` of layer `name`."""
        whole, (rows, cols) = self.owned[index][name]
        if rows.stop > f.shape[-2] or cols.stop > f.shape[-1]:
            raise ArtconvError(f"--tile: layer {name}'s map is not where the network's "
                               "geometry puts it, so tiles cannot be exact; use --tile 0")
        return whole, f[..., rows, cols]

    def part(self, index: int, name: str, f: torch.Tensor, as_is: bool = False
             ) -> tuple[Slices, torch.Tensor]:
        """(where in the whole map, the owned features (N,C,p) in fp32 (float64 maps stay
        float64), or `as_is` in f's dtype) of tile `index`'s map `f` of layer `name`: one
        copy."""
        whole, owned = self.piece(index, name, f)
        wide = f.dtype if as_is or f.dtype == torch.float64 else torch.float32
        n, c, h, w = owned.shape
        if f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous():
            # NHWC: copied as its rows (P,C), each a run of memory, and seen as (C,P); a
            # copy into NCHW order transposes every element on the way (the largest op
            # after the convolutions in a profile of bf16 tiles)
            rows = torch.empty((n, h, w, c), dtype=wide, device=f.device)
            return whole, rows.copy_(owned.permute(0, 2, 3, 1)).view(n, h * w, c).mT
        return whole, owned.to(wide, memory_format=torch.contiguous_format).flatten(2)

    @property
    def grids(self) -> dict[str, tuple[int, int]]:
        """Each layer's whole map size (h, w)."""
        return {name: hw for name, (_, hw) in self.maps.items()}

    def parts(self, index: int, feats: Mapping[str, torch.Tensor], layers: Sequence[str], *,
              as_made: bool = False, as_is: bool = False) -> dict[str, Part]:
        """Tile `index`'s owned positions of each of `layers`, as the terms take them:
        flattened (`part`, in fp32 or `as_is`), or `as_made` the tile's whole maps as
        they are, with where the owned positions sit in them (`Part.local`)."""
        out = {}
        for name in layers:
            if as_made:
                where, _ = self.piece(index, name, feats[name])  # checks the geometry
                out[name] = Part(where, self.maps[name][1], feats[name],
                                 self.owned[index][name][1])
            else:
                where, f = self.part(index, name, feats[name], as_is)
                out[name] = Part(where, self.maps[name][1], f)
        return out


@torch.no_grad()
def assemble(net: Net, image: torch.Tensor, layers: Sequence[str], plan: TilePlan
             ) -> dict[str, torch.Tensor]:
    """The whole image's maps of `layers`, computed one tile at a time (what the untiled
    network gives, up to float rounding): the content targets of a tiled run. In the
    network's output precision: bf16 maps held as bf16 are exact and half the size (the
    largest image-sized buffer of a run: 64 bytes per pixel for relu3_1 in fp32)."""
    out: dict[str, torch.Tensor] = {}
    freed = FreedMemory(image.device)
    for i, t in enumerate(plan.tiles):
        feats = net.features(rgb(t.crop(image)), layers)
        for name in layers:
            (rows, cols), part = plan.piece(i, name, feats[name])
            if name not in out:
                h, w = plan.maps[name][1]
                out[name] = part.new_zeros((image.shape[0], part.shape[1], h, w))
            out[name][..., rows, cols] = part
        del feats, part  # not alive through the next tile's pass
        freed.tile_done()
    return out


class TiledObjective(Objective):
    """`Objective` evaluated tile by tile (cores of about `tile` px): the same rows and
    gradient up to float rounding, in the memory of one tile, from the same terms (their
    tile forms: `losses.Content.owned`, `losses.Style.sums` / `from_sums` / `gradients`,
    `losses.TV.in_bands`). `content_targets` are the whole maps (`assemble`). Calling it
    gives the rows without gradient; `value_and_grad` gives both. `on_tile(done, n)` is told
    after each tile of each pass (`done` of `n` tiles of that pass)."""

    def __init__(self, net: Net, options: StyleOptions, weights: LossWeights,
                 content_targets: dict[str, torch.Tensor], targets: StyleTargets,
                 regions: torch.Tensor | None = None, priors: Sequence[Prior] = (), *,
                 tile: int, on_tile: Any = None) -> None:
        super().__init__(net, options, weights, content_targets, targets, regions, priors)
        self.tile, self.on_tile = tile, on_tile
        self._plans: dict[tuple[int, int], TilePlan] = {}
        self.tile_passes = 0  # tiles run so far (both passes)

    def plan(self, hw: Sequence[int]) -> TilePlan:
        key = (int(hw[0]), int(hw[1]))
        if key not in self._plans:
            self._plans[key] = TilePlan(self.net.fx, self.layers, key, self.tile)
        return self._plans[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            plan = self.plan(x.shape[-2:])
            sums, content, _ = self._statistics(x, plan)
            with fp32():
                style = self.style.from_sums(sums, plan.grids)
                pixel = [w * term({}, x) for _, w, term in self.terms if not term.layers]
        return self._rows(content, style, pixel)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach()
        plan = self.plan(x.shape[-2:])
        sums, content, kept = self._statistics(x, plan, keep_last=True)
        with torch.enable_grad(), fp32():
            leaves = {k: tuple(s.requires_grad_(True) for s in v) for k, v in sums.items()}
            style = self.style.from_sums(leaves, plan.grids)
            flat = [s for v in leaves.values() for s in v]
            found = torch.autograd.grad(self.weights.style * style.sum(), flat,
                                        allow_unused=True)
        it = iter(found)
        slopes = {k: tuple(next(it) for _ in v) for k, v in leaves.items()}
        grad = torch.zeros_like(x)
        last = len(plan) - 1
        freed = FreedMemory(x.device)
        for done, i in enumerate((last, *range(last)), 1):  # the last tile's maps are
            made, kept = (kept, None) if i == last else (None, kept)  # still there
            self._tile_gradient(x, plan, i, plan.tiles[i], slopes, grad, made)
            del made  # that tile's graph: not alive through the next tile's pass
            self._tick(done, plan, freed)
        pixel = []
        for _, w, term in self.terms:
            if term.layers:
                continue
            if term is self.tv:  # image-sized temporaries: a band of rows at a time
                pixel.append(w * self.tv.in_bands(x, grad, w))
                continue
            with torch.enable_grad(), fp32():  # a prior: any function of the whole image
                src = x.detach().requires_grad_(True)
                value = w * term({}, src)
                (extra,) = torch.autograd.grad(value.sum(), src)
            grad += extra
            pixel.append(value.detach())
        return self._rows(content, style.detach(), pixel), grad

    # -- the passes ---------------------------------------------------------------------------
    def _statistics(self, x: torch.Tensor, plan: TilePlan, keep_last: bool = False
                    ) -> tuple[Sums, torch.Tensor, Made | None]:
        """Pass 1: the style term's sums over the image (`losses.Style.sums`), the content
        loss (K,), unweighted, and with `keep_last` the last tile's maps made with grad, for
        pass 2 to start from: one tile's network pass less per evaluation, in the memory
        pass 2 takes anyway (one tile's graph)."""
        sums: Sums = {}
        content = x.new_zeros(x.shape[0])
        kept: Made | None = None
        freed = FreedMemory(x.device)
        for i, t in enumerate(plan.tiles):
            keep = keep_last and i == len(plan) - 1
            with torch.set_grad_enabled(keep):
                crop = t.crop(x).detach().requires_grad_(keep)
                feats = self.net.features(rgb(crop), self.layers)
            with torch.no_grad(), fp32():
                # bf16 maps as they are: the Gram sums may be a fused bf16 product
                self.style.sums(plan.parts(i, feats, self.style.layers, as_is=True),
                                into=sums)
                if self.content.pieces:
                    content += self.content.owned(plan.parts(i, feats, self.content.layers))
            if keep:
                kept = (crop, feats)
            del crop, feats  # not alive through the next tile's pass (unless kept)
            self._tick(i + 1, plan, freed)
        return sums, content, kept

    def _tile_gradient(self, x: torch.Tensor, plan: TilePlan, i: int, t: Tile,
                       slopes: Mapping[tuple[str, int], tuple[torch.Tensor | None, ...]],
                       grad: torch.Tensor, made: Made | None = None) -> None:
        """Pass 2 for one tile: the surrogate's gradient, added into `grad`. The style
        part enters as the gradients at the whole maps (`losses.Style.gradients`), in the
        maps' own precision; the content part as its owned value. `made`: the tile's crop
        and maps with their graph, if pass 1 kept them."""
        with torch.enable_grad():
            if made is None:
                crop = t.crop(x).detach().requires_grad_(True)
                feats = self.net.features(rgb(crop), self.layers)
            else:
                crop, feats = made
            outputs: list[torch.Tensor] = []
            grads: list[torch.Tensor | None] = []
            with fp32():
                if self.content.pieces:
                    owned = self.content.owned(plan.parts(i, feats, self.content.layers))
                    outputs.append(self.weights.content * owned.sum())
                    grads.append(None)
                pieces = plan.parts(i, feats, self.style.layers, as_made=True)
                for name, g in self.style.gradients(pieces, slopes).items():
                    outputs.append(feats[name])
                    grads.append(g)
            if outputs:
                (g,) = torch.autograd.grad(outputs, crop, grads)
                add_crop(grad, t, g)

    def _tick(self, done: int, plan: TilePlan, freed: FreedMemory) -> None:
        """`done` tiles of this pass are done: freed memory that piled up goes back to the
        system, and `on_tile` is told."""
        freed.tile_done()
        self.tile_passes += 1
        if self.on_tile is not None:
            self.on_tile(done, len(plan))

    def _rows(self, content: torch.Tensor, style: torch.Tensor,
              pixel: Sequence[torch.Tensor]) -> torch.Tensor:
        w = self.weights
        return torch.stack([w.content * content, w.style * style, *pixel]).detach()


class TiledTargetMaker(TargetMaker):
    """`TargetMaker` whose style images, at a scale that runs tiled (`tiles`: scale size ->
    tile px), are measured tile by tile too: the same global statistics (each position
    counted once), without the whole style image's network pass in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tiles: dict[int, int] = {}

    def tile_at(self, size: int) -> int:
        setting = self.options.tile
        return self.tiles.get(size, setting if isinstance(setting, int) else 0)

    def _blended(self, styles: Sequence[torch.Tensor], blend: Sequence[float], size: int,
                 content: torch.Tensor | None) -> dict[str, Any]:
        tile = self.tile_at(size)
        if not tile:
            return super()._blended(styles, blend, size, content)
        opts = self.options
        stats = []
        for image in styles:
            image = _prepared(image.to(self.net.device, torch.float32), content, size, opts)
            stats.append({name: lf.statistics_from_sums(opts.style_loss, *sums)
                          for name, sums in self._sums(image, tile, None).items()})
        return style_targets(opts.style_loss, stats, blend)

    def _per_style(self, styles: Sequence[torch.Tensor], blend: Sequence[float], size: int,
                   content: torch.Tensor | None) -> dict[str, Any]:
        tile = self.tile_at(size)
        if not tile:
            return super()._per_style(styles, blend, size, content)
        opts, masks = self.options, self.masks
        assert masks is not None
        found: dict[str, list[Any]] = {name: [] for name in opts.style_layers}
        for k, image in enumerate(styles):
            image = _prepared(image.to(self.net.device, torch.float32), content, size, opts)
            region = masks.style_region(k, tuple(image.shape[-2:]), self.net.device)
            for name, (second, first, weight) in self._sums(image, tile, region).items():
                if weight is None:
                    raise ArtconvError(f"--style-masks {masks.style_files[k]['path']}: "
                                       f"selects nothing of style image {k + 1}")
                found[name].append(lf.style_target(opts.style_loss, (
                    lf.statistics_from_sums(opts.style_loss, second, first, weight))))
        return {name: tuple(t) for name, t in found.items()}

    @torch.no_grad()
    def _sums(self, image: torch.Tensor, tile: int, region: torch.Tensor | None
              ) -> dict[str, tuple[torch.Tensor, torch.Tensor, Any]]:
        """Per style layer: (sum m f f^T, sum m f, the weight they are divided by, None
        where the region has no mass there), over the image's positions, tile by tile."""
        layers = list(self.options.style_layers)
        plan = TilePlan(self.net.fx, layers, tuple(image.shape[-2:]), tile)
        masks = {n: (None if region is None else lf.layer_mask(region, plan.maps[n][1]))
                 for n in layers}
        out: dict[str, list[Any]] = {}
        freed = FreedMemory(image.device)
        for i, t in enumerate(plan.tiles):
            feats = self.net.features(t.crop(image), layers)
            with fp32():
                for name in layers:
                    (rows, cols), f = plan.part(i, name, feats[name])
                    m = masks[name]
                    owned_mask = None if m is None else m[..., rows, cols].flatten(2)
                    first, second = lf.moment_sums(f, owned_mask)
                    if name in out:
                        out[name][0] += second
                        out[name][1] += first
                    else:
                        out[name] = [second, first]
            del feats  # not alive through the next tile's pass
            freed.tile_done()
        result: dict[str, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        for name, (second, first) in out.items():
            h, w = plan.maps[name][1]
            m = masks[name]
            mass = second.new_tensor(float(h * w)) if m is None else m.sum().float()
            empty = m is not None and float(mass) / (h * w) < lf.MIN_MASS
            weight = None if empty else mass.clamp_min(lf.MIN_MASS * h * w)
            result[name] = (second, first, weight)
        return result


# -- memory --------------------------------------------------------------------------------
Estimate = MemoryEstimate  # the name the style engine's API uses


def estimate(fx: FeatureExtractor, options: StyleOptions, hw: tuple[int, int], tile: int,
             batch: int = 1, regions: int = 0) -> Estimate:
    """The peak memory of one scale of `hw` px with cores of `tile` px (0: untiled)."""
    h, w = hw
    layers = fx.check_layers([*options.content_layers, *options.style_layers])
    deepest = layers[-1]
    channels = 1 if options.preserve_colors == "luminance" else 3
    image = 4 * batch * channels * h * w
    rgb_image = 4 * batch * 3 * h * w
    if options.optimizer == "lbfgs":
        # history pairs (s, y), plus the direction, the last gradient and the flat copies
        optimiser = image * (2 * options.lbfgs_history + 4)
    else:
        optimiser = image * (3 + (2 if options.avg_decay else 0))
    walked = {g.name: g for g in walk(fx.net, hw, until=deepest)}
    content = sum(4 * batch * walked[n].channels * walked[n].height * walked[n].width
                  for n in options.content_layers)
    masks = 4 * regions * (h * w + sum(walked[n].height * walked[n].width
                                       for n in options.style_layers))
    buffers = {"image and gradient": 4 * image, "content": rgb_image + content,
               "tv": 6 * image, "optimiser": optimiser, "masks": masks}
    network = network_bytes(fx)
    if tile:
        align, margin = owned_context(fx.net, layers)
        side = -(-tile // align) * align + 2 * margin
        crop = (min(h, side), min(w, side))
        stats = sum(12 * batch * max(1, regions) * fx.channels(n) ** 2
                    for n in options.style_layers)
        # the owned parts of the captured maps, copied to fp32 for the statistics
        at_crop = {g.name: g for g in walk(fx.net, crop, until=deepest)}
        owned_copies = sum(8 * batch * g.channels * g.height * g.width
                           for n, g in at_crop.items() if n in layers)
        one_pass = pass_bytes(fx.net, crop, deepest, batch=batch) + stats + owned_copies
    else:
        one_pass = pass_bytes(fx.net, hw, deepest, batch=batch)
    return Estimate(hw, tile, buffers, one_pass, network)


def budget(options: StyleOptions, device: torch.device) -> int:
    """Bytes a run may use: --max-memory, else what the device has free."""
    if options.max_memory is not None:
        return int(options.max_memory * GIB)
    return available_memory(device)


def choose_tile(fx: FeatureExtractor, options: StyleOptions, hw: tuple[int, int],
                device: torch.device, batch: int = 1, regions: int = 0, *,
                check: bool = True) -> int:
    """The tile size for one scale (0: untiled). With `check`, a layout that would not fit
    the budget is refused with one line, before anything is allocated."""
    limit = budget(options, device)
    setting = options.tile
    where = (f"--max-memory {options.max_memory:g} GiB" if options.max_memory is not None
             else f"the {limit / GIB:.1f} GiB free on {device.type} (--max-memory)")
    if setting == "auto":
        untiled = estimate(fx, options, hw, 0, batch, regions)
        if untiled.total <= limit:
            return 0
        layers = [*options.content_layers, *options.style_layers]
        align, _ = owned_context(fx.net, fx.check_layers(layers))
        least = fx.min_size(layers)
        found = largest_tile(
            lambda side: estimate(fx, options, hw, side, batch, regions).total <= limit,
            max(hw), align)
        tile = max(found, least) if found else max(align, least)
        need = estimate(fx, options, hw, tile, batch, regions)
        if check and not found:
            raise ArtconvError(f"--tile auto: a {hw[1]}x{hw[0]} px scale needs at least "
                               f"{need.text()}, more than {where}; {_advice(need)}")
        return tile
    tile = int(setting)
    need = estimate(fx, options, hw, tile, batch, regions)
    if not check:
        return tile
    if tile == 0 and options.max_memory is None:
        # Untiled and no budget given: only the optimiser state is checked, the one buffer
        # that grows with --lbfgs-history rather than with the network.
        state = need.buffers["optimiser"]
        if options.optimizer == "lbfgs" and state > limit:
            raise ArtconvError(
                f"--lbfgs-history {options.lbfgs_history}: L-BFGS state for a {hw[1]}x"
                f"{hw[0]} px scale needs {state / GIB:.1f} GiB, more than {where}; use "
                "--optimizer adam or a shorter --lbfgs-history")
        return 0
    if need.total > limit:
        raise ArtconvError(f"--tile {tile}: a {hw[1]}x{hw[0]} px scale needs {need.text()}, "
                           f"more than {where}; {_advice(need)}")
    return tile


def _advice(need: Estimate) -> str:
    """What would help most, by the largest part of the estimate."""
    state = need.buffers.get("optimiser", 0)
    if state >= max(need.pass_, need.total - state - need.pass_):
        return ("use --optimizer adam or a shorter --lbfgs-history (or raise --max-memory, "
                "lower --size)")
    if need.pass_ >= need.total / 2:
        return ("use a smaller --tile or --tile auto (or raise --max-memory, lower --size)"
                if need.tile else "use --tile auto or --tile PX (or raise --max-memory)")
    return "lower --size or raise --max-memory (the image-sized buffers alone do not fit)"


def tiles_needed(fx: FeatureExtractor, layers: Sequence[str], hw: tuple[int, int],
                 tile: int) -> int:
    """How many tiles an image of `hw` runs as with cores of `tile` px (1: untiled)."""
    if not tile:
        return 1
    align, margin = owned_context(fx.net, fx.check_layers(layers))
    return len(tile_grid(*hw, tile, margin, align, fx.min_size(layers), wrap=fx.seamless))


__all__ = ["Estimate", "TilePlan", "TiledObjective", "TiledTargetMaker", "assemble", "budget",
           "choose_tile", "estimate", "tiles_needed"]
