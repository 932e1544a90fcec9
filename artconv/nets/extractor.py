"""The feature core: a network whose layers are asked for by name and captured in one pass.

    fx = FeatureExtractor.vgg("vgg19", weights="imagenet", pooling="avg")
    maps = fx(image, ["relu1_1", "relu4_2"])      # {name: tensor}; nothing past relu4_2 runs

Inputs are always RGB in [0, 1]; the extractor applies the normalisation its weights expect.
Own networks plug in as a `Backbone` (an nn.Sequential of named layers plus its
normalisation), so every engine works on them unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from artconv.errors import ArtconvError
from artconv.nets import pooling as pooling_mod
from artconv.nets import vgg
from artconv.nets import weights as weights_mod
from artconv.nets.geometry import LayerInfo, describe, fits, min_side
from artconv.nets.seamless import make_seamless
from artconv.nets.weights import Normalization, Normalize


@dataclass
class Backbone:
    """An own network for artconv.

    `layers`: an nn.Sequential whose children are the named layers (conv, activation,
    pool, ...), each taking and returning an NCHW tensor. `normalization`: how RGB in
    [0, 1] is turned into the network's input (default: used as is).
    """

    layers: nn.Sequential
    normalization: Normalization = field(default_factory=Normalization)
    name: str = "custom"

    @classmethod
    def coerce(cls, model: Any, name: str = "custom") -> Backbone:
        if isinstance(model, Backbone):
            return model
        if isinstance(model, nn.Sequential):
            return cls(model, Normalization(), name)
        raise ArtconvError(f"{name}: expected an nn.Sequential or artconv.Backbone, "
                           f"got {type(model).__name__}")


class FeatureExtractor(nn.Module):
    """Captures any set of named layers in one forward pass, cut after the deepest one.

    Each named layer carries one permanent forward hook that stores its output when the
    layer is in the current request, so captures, user hooks (`add_hook`) and the cut all
    act on the same modules. Parameters are frozen and the network stays in eval mode.
    """

    def __init__(self, backbone: Backbone | nn.Sequential, pooling: str = "max", *,
                 avg_rescale: bool = False, seamless: bool = False,
                 identity: str | None = None, check: bool = True) -> None:
        """`seamless`: every convolution and pool pads circularly (artconv.nets.seamless).
        `check=False` skips the dry run that proves every layer keeps the NCHW contract
        (for networks artconv built itself)."""
        super().__init__()
        backbone = Backbone.coerce(backbone)
        self.pooling = pooling
        self.seamless = bool(seamless)
        self.identity = identity or backbone.name
        self.normalize = Normalize(backbone.normalization)
        self.net = pooling_mod.apply_pooling(backbone.layers, pooling)
        if self.seamless:
            self.net = make_seamless(self.net)
        self.layer_names: list[str] = [name for name, _ in self.net.named_children()]
        self._index = {name: i for i, name in enumerate(self.layer_names)}
        self._wanted: set[str] = set()
        self._captured: dict[str, torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()
        if not self.layer_names:
            raise ArtconvError(f"{self._label()}: the network has no layers")
        # Layers [0, usable) keep the NCHW contract; `unusable` says why the next one doesn't.
        self._measured, self.unusable = _probe(self.net, self.normalize) if check else ({}, None)
        self._usable = len(self._measured) if self.unusable else len(self.layer_names)
        if self._usable == 0:
            raise ArtconvError(f"{self._label()}: {self.unusable}; no layer can be used")
        # torch.compile'd runs (opt-in, `compile` option), one per (last layer, captures)
        self.use_compile = False
        self._compiled: dict[tuple[int, tuple[int, ...]], Callable] = {}
        self.avg_scales: dict[str, float] = {}
        if pooling == "avg" and avg_rescale:
            self.avg_scales = pooling_mod.calibrate_avg_scales(
                backbone.layers, self.net, self.normalize, layers=self._usable)
        for name, module in self.net.named_children():
            module.register_forward_hook(self._capture_hook(name))

    # -- construction ----------------------------------------------------------------
    @classmethod
    def vgg(cls, arch: str = "vgg19", weights: str = "imagenet", pooling: str = "max", *,
            preprocess: str = "auto", seed: int = 0, avg_rescale: bool = False,
            seamless: bool = False) -> FeatureExtractor:
        """VGG16/VGG19 with conventional layer names and the chosen weights."""
        backbone, identity = _vgg_backbone(arch, weights, preprocess, seed)
        return cls(backbone, pooling, avg_rescale=avg_rescale, seamless=seamless,
                   identity=identity, check=False)

    @classmethod
    def from_options(cls, options: Any) -> FeatureExtractor:
        """Build from any engine's options (`artconv.options.CoreOptions`)."""
        seamless = bool(getattr(options, "seamless", False))
        if options.backbone:
            backbone = load_backbone(options.backbone)
            fx = cls(backbone, options.pooling, avg_rescale=options.avg_rescale,
                     seamless=seamless, identity=f"backbone:{options.backbone}")
        else:
            fx = cls.vgg(options.arch, options.weights, options.pooling,
                         preprocess=options.preprocess, seed=options.seed,
                         avg_rescale=options.avg_rescale, seamless=seamless)
        fx.use_compile = bool(getattr(options, "compile", False))
        return fx

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Always eval: BatchNorm in an own backbone must keep its running statistics.
        return super().train(False)

    # -- layers ------------------------------------------------------------------------
    def check_layers(self, layers: Iterable[str]) -> list[str]:
        """The names, in network order; unknown ones are an error listing the valid ones,
        and so are layers at or past one that breaks the NCHW contract."""
        layers = list(dict.fromkeys(layers))
        for name in layers:
            if name not in self._index:
                raise ArtconvError(f"unknown layer {name!r} for {self.identity.split(':')[0]} "
                                   f"(valid: {', '.join(self.layer_names[:self._usable])})")
            if self._index[name] >= self._usable:
                first = self.layer_names[self._usable]
                raise ArtconvError(f"{self._label()}: layer {name!r} cannot be used: "
                                   f"{self.unusable} (use a layer before {first!r})")
        return sorted(layers, key=self._index.__getitem__)

    def module(self, name: str) -> nn.Module:
        self.check_layers([name])
        return self.net[self._index[name]]

    def channels(self, name: str) -> int:
        """Channels of a layer's output (independent of the input size)."""
        self.check_layers([name])
        if not hasattr(self, "_channels"):
            self._channels = {i.name: i.channels for i in self.describe(64)}
        return self._channels[name]

    def describe(self, size: int | tuple[int, int] = 224) -> list[LayerInfo]:
        """Each layer's kind, channels, stride, receptive field, output size and cost."""
        infos = describe(self.net, size, scales=self.avg_scales)[:self._usable]
        # The walk takes unknown layers (a block of convs, say) as elementwise; the dry run
        # saw what they really output.
        return [dataclasses.replace(i, channels=self._measured[i.name])
                if self._measured.get(i.name, i.channels) != i.channels else i for i in infos]

    def min_size(self, layers: Iterable[str], *, checked: bool = True) -> int:
        """The smallest square input for which every requested layer has at least 1 px."""
        deepest = self.check_layers(layers)[-1] if checked else list(layers)[-1]
        return min_side(self.net, deepest)

    # -- running -----------------------------------------------------------------------
    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """{name: map} for RGB `image` in [0, 1] of shape (N,3,H,W); runs no layer past the
        deepest requested one."""
        names = self.check_layers(layers)
        if not names:
            return {}
        if image.dim() != 4 or image.shape[1] != 3:
            raise ArtconvError(f"expected an image batch of shape (N, 3, H, W), got "
                               f"{tuple(image.shape)}")
        self.check_size(image.shape[-2:], names)
        stop = self._index[names[-1]] + 1
        if self.use_compile and not self._user_hooks(stop):
            return self._run_compiled(image, names, stop)
        self._wanted, self._captured = set(names), {}
        try:
            x = self.normalize(image)
            for module in self.net[:stop]:
                x = module(x)
            return {name: self._captured[name] for name in names}
        finally:
            self._wanted, self._captured = set(), {}

    def _user_hooks(self, stop: int) -> bool:
        """Whether a layer before `stop` carries hooks besides the capture hook (they run
        only in the eager loop)."""
        return any(len(m._forward_hooks) > 1 or m._forward_pre_hooks
                   for m in self.net[:stop])

    def _run_compiled(self, image: torch.Tensor, names: list[str], stop: int
                      ) -> dict[str, torch.Tensor]:
        """The forward as one torch.compile'd graph (captures by position, not by hook);
        a compiler that fails says so in one line instead of a traceback."""
        keep = tuple(self._index[n] for n in names)
        fn = self._compiled.get((stop, keep))
        if fn is None:
            fn = torch.compile(functools.partial(_plain_run, self.normalize, self.net[:stop],
                                                 keep), dynamic=False)
            self._compiled[(stop, keep)] = fn
        try:
            maps = fn(image)
        except Exception as exc:  # inductor needs a working C++ (or Triton) toolchain
            raise ArtconvError(f"--compile: torch.compile failed here ({_describe_exc(exc)}); "
                               "run without --compile") from exc
        return dict(zip(names, maps, strict=True))

    def add_hook(self, name: str, hook: Callable[[nn.Module, Any, Any], Any]
                 ) -> RemovableHandle:
        """Attach a standard forward hook to a named layer (returning a value replaces the
        layer's output, as in torch); call `.remove()` on the handle to detach it."""
        return self.module(name).register_forward_hook(hook)

    def _label(self) -> str:
        kind, _, spec = self.identity.partition(":")
        return f"--backbone {spec}" if kind == "backbone" else self.identity

    def _capture_hook(self, name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if name in self._wanted:
                self._captured[name] = output
        return hook

    def check_size(self, hw: Sequence[int], layers: Iterable[str], *, what: str | None = None,
                   where: str = "") -> None:
        """Refuse an input of `hw` (height, width) too small for `layers`, naming `what`
        (a file) and `where` (the option that chose the size, e.g. " at --size 16")."""
        names = self.check_layers(layers)
        if not names:
            return
        h, w = int(hw[0]), int(hw[1])
        if not fits(self.net, (h, w), names[-1]):
            need = self.min_size(names)
            subject = f"{what}: {w}x{h} px" if what else f"image of {w}x{h} px"
            raise ArtconvError(f"{subject}{where} is too small for layer {names[-1]}: "
                               f"needs at least {need}x{need} px")


def _plain_run(normalize: nn.Module, layers: nn.Sequential, keep: tuple[int, ...],
               image: torch.Tensor) -> list[torch.Tensor]:
    """The layers' outputs at the positions `keep`, without hooks (what torch.compile
    traces)."""
    x, out = normalize(image), []
    for i, layer in enumerate(layers):
        x = layer.forward(x)
        if i in keep:
            out.append(x)
    return out


def _vgg_backbone(arch: str, weights: str, preprocess: str, seed: int
                  ) -> tuple[Backbone, str]:
    """VGG's layers with the chosen weights loaded (or seeded random ones), and their
    identity for recipes."""
    features = vgg.build_features(arch)
    loaded = weights_mod.resolve(arch, weights, preprocess)
    if loaded.state is None:
        weights_mod.random_init(features, seed)
    else:
        weights_mod.load_into(features, arch, loaded.state, weights)
    identity = f"{arch}:{loaded.identity}" + (f":seed{seed}" if loaded.state is None else "")
    return Backbone(features, loaded.normalization, arch), identity


PROBE_SIDE = 1024  # bounds the dry run's memory whatever the size walk concludes


def _probe(net: nn.Sequential, normalize: nn.Module) -> tuple[dict[str, int], str | None]:
    """Run a small random image through every layer once (at least 32 px and what the size
    walk says the network needs, doubled up to PROBE_SIDE where a layer needs more).

    Returns each layer's measured output channels, and why the first layer that breaks the
    contract (returns a tuple or a flattened tensor, or fails) can't be used, or None. That
    layer and the ones after it are refused by name when asked for (`check_layers`); a
    classifier's trailing flatten is harmless as long as nobody asks for it."""
    param = next(itertools.chain(net.parameters(), net.buffers()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    last = list(dict(net.named_children()))[-1]
    side = min(max(32, min_side(net, last)), PROBE_SIDE)
    while True:
        x = normalize(torch.rand(1, 3, side, side, generator=torch.Generator()
                                 .manual_seed(0))).to(device, dtype)
        measured: dict[str, int] = {}
        with torch.no_grad():
            for name, module in net.named_children():
                try:
                    x = module(x)
                except Exception as exc:
                    # The size walk misjudges layers it can't see into (nested blocks): a
                    # larger image may be all that layer needed (torch says so as a
                    # RuntimeError).
                    if isinstance(exc, RuntimeError) and side < PROBE_SIDE:
                        break
                    return measured, (f"layer {name!r} failed on a {side}x{side} px test "
                                      f"image ({_describe_exc(exc)})")
                if not isinstance(x, torch.Tensor) or x.dim() != 4:
                    return measured, (f"layer {name!r} returned {_what(x)} for a "
                                      f"{side}x{side} px image, not an NCHW (4-D) map")
                measured[name] = x.shape[1]
            else:
                return measured, None
        side = min(2 * side, PROBE_SIDE)


def _what(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dim()}-D tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


# -- own backbones ---------------------------------------------------------------------------
def load_backbone(spec: str) -> Backbone:
    """`FILE.py:FUNCTION` -> the Backbone that FUNCTION() returns.

    Contract: FUNCTION takes no arguments and returns an nn.Sequential whose named children
    are the layers (input RGB in [0, 1], no normalisation) or an `artconv.Backbone`
    carrying its own normalisation. Pretrained weights are FUNCTION's business.
    """
    file, sep, func = spec.rpartition(":")
    if not sep or not file or not func:
        raise ArtconvError(f"--backbone {spec!r}: expected FILE.py:FUNCTION")
    path = Path(file).expanduser()
    if not path.is_file():
        what = ("is a folder, not a Python file" if path.is_dir() else
                "is not a regular file" if path.exists() else "no such backbone file")
        raise ArtconvError(f"{file}: {what} (--backbone FILE.py:FUNCTION)")
    module_name = f"artconv_backbone_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ArtconvError(f"{spec}: cannot import {file} as a Python file")
    module = importlib.util.module_from_spec(spec_obj)
    sys.path.insert(0, str(path.parent))  # let the file import its neighbours
    try:
        spec_obj.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        # SystemExit too: a sys.exit() in user code would end artconv with its status
        # (0!) having written nothing.
        raise ArtconvError(f"{spec}: importing {file} failed ({_describe_exc(exc)})") from exc
    finally:
        with contextlib.suppress(ValueError):  # the file may have edited sys.path itself
            sys.path.remove(str(path.parent))
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ArtconvError(f"{spec}: {file} has no function {func!r}")
    try:
        model = fn()
    except (Exception, SystemExit) as exc:
        raise ArtconvError(f"{spec}: {func}() failed ({_describe_exc(exc)})") from exc
    if not isinstance(model, (Backbone, nn.Sequential)):
        raise ArtconvError(f"{spec}: {func}() returned {type(model).__name__}; expected an "
                           "nn.Sequential or artconv.Backbone")
    return Backbone.coerce(model, name=f"{path.stem}:{func}")


def _describe_exc(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
