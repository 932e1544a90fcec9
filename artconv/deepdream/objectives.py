"""Dream objectives: small differentiable scores of captured feature maps, composed like
lucent's optvis objectives.

    obj = layer_l2("relu4_2") + 0.5 * channel_mean("relu5_1", [12, 45])
    score = obj(fx(image, obj.layers))        # a scalar tensor to maximise

Every built-in objective is a mean over positions, so a tiled engine can weight each tile by
its share of the image and sum (see artconv.nets.tiling). Each takes a `scale` (the layer's typical
magnitude on the input image) so layers of very different magnitudes get comparable weight.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

# The channel syntax lives with the option record (no torch there); re-exported here.
from artconv.deepdream.options import RANKINGS as RANKINGS
from artconv.deepdream.options import ChannelSpec
from artconv.deepdream.options import parse_channels as parse_channels
from artconv.errors import ArtconvError

Maps = Mapping[str, torch.Tensor]


class Objective:
    """A named score of feature maps that knows which layers it needs; supports +, -, *."""

    def __init__(self, fn: Callable[[Maps], torch.Tensor], layers: Iterable[str],
                 name: str) -> None:
        self.fn = fn
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, maps: Maps) -> torch.Tensor:
        return self.fn(maps)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return Objective(lambda m: self(m) + other(m), self.layers + other.layers,
                             f"{self.name} + {other.name}")
        return Objective(lambda m: self(m) + other, self.layers, f"{self.name} + {other}")

    def __radd__(self, other: float) -> Objective:
        # sum([...]) starts from 0; keep the name clean for that case.
        return self if other == 0 else self + other

    def __mul__(self, k: float) -> Objective:
        if k == 1:
            return self
        return Objective(lambda m: k * self(m), self.layers, f"{k:g}*{self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda m: -self(m), self.layers, f"-{self.name}")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def layer_l2(layer: str, scale: float = 1.0) -> Objective:
    """Mean squared activation of a layer (the classic Deep Dream objective), over `scale`."""
    return Objective(lambda m: m[layer].float().square().mean() / scale, [layer],
                     f"l2({layer})")


def channel_mean(layer: str, channels: Sequence[int], scale: float = 1.0) -> Objective:
    """Mean activation of chosen channels: the mean, not the square, so a weak channel gets a
    full-strength gradient rather than one proportional to its (small) activation."""
    index = list(channels)
    # Indexing with a Python list copies it to the device, blocking, on every call; keep
    # one index tensor per device instead.
    on_device: dict[torch.device, torch.Tensor] = {}

    def fn(maps: Maps) -> torch.Tensor:
        x = maps[layer]
        if x.device not in on_device:
            on_device[x.device] = torch.tensor(index, dtype=torch.long, device=x.device)
        return x.index_select(1, on_device[x.device]).float().mean() / scale

    return Objective(fn, [layer], f"channels({layer}:{','.join(map(str, index))})")


def guided(layer: str, guide: torch.Tensor, scale: float = 1.0) -> Objective:
    """google/deepdream's guided dream: each position maximises its dot product with the guide
    feature (a column of `guide`, shape (C, M)) that it already matches best."""
    guide = guide.float()
    # The (M x positions) similarity matrix is made in chunks so a large tile stays bounded.
    chunk = max(1, (1 << 24) // max(1, guide.shape[1]))

    def fn(maps: Maps) -> torch.Tensor:
        x = maps[layer].float().flatten(2)  # (N, C, P)
        g = guide.to(x.device)
        with torch.no_grad():  # the choice is not differentiated, as in the original
            target = torch.empty_like(x)
            for n in range(x.shape[0]):
                for start in range(0, x.shape[2], chunk):
                    part = x[n, :, start:start + chunk]
                    target[n, :, start:start + chunk] = g[:, (g.T @ part).argmax(0)]
        return (x * target).sum(1).mean() / scale

    return Objective(fn, [layer], f"guided({layer})")


def custom(fn: Callable[[Maps], torch.Tensor] | Objective, layers: Iterable[str]
           ) -> Objective:
    """A user's function of the captured maps; an Objective keeps its own layers."""
    if isinstance(fn, Objective):
        return fn
    return Objective(fn, layers, getattr(fn, "__name__", "custom"))


# -- choosing channels ---------------------------------------------------------------------
def select_channels(spec: ChannelSpec, layer: str, count: int,
                    means: torch.Tensor | None = None, seed: int = 0) -> list[int]:
    """The channel indices `spec` names for a layer of `count` channels; `means` (per-channel
    mean activation on the input image) ranks them for strongest/weakest."""
    if spec.ranking is None:
        bad = [c for c in spec.channels if not 0 <= c < count]
        if bad:
            raise ArtconvError(f"--channels {spec.describe()}: channel {bad[0]} is out of "
                               f"range for {layer}, which has {count} (0-{count - 1})")
        return sorted(set(spec.channels))
    if spec.k > count:
        raise ArtconvError(f"--channels {spec.describe()}: {layer} has only {count} channels")
    if spec.ranking == "random":
        return sorted(random.Random(seed).sample(range(count), spec.k))
    if means is None:
        raise ValueError("strongest/weakest need the channel means of the input")
    order = torch.argsort(means.float(), descending=spec.ranking == "strongest")
    return sorted(order[:spec.k].tolist())
