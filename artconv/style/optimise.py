"""The optimisation at one scale: the objective (weighted content, style and TV losses of a
batch) and `ScaleRun`, the state one scale keeps (one leaf per image, its optimisers, the
iterate average) with its step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from artconv.device import fp32
from artconv.io import color
from artconv.losses.terms import TV, Content, Pixel, Regions, Style, Term
from artconv.losses.weights import LossWeights
from artconv.style.lbfgs import CompactLBFGS
from artconv.style.options import StyleOptions
from artconv.style.targets import Net, StyleTargets

LBFGS_HISTORY = 100  # neural-style's (torch's) default; StyleOptions.lbfgs_history

AdamState = list[dict[str, Any]]  # per image, carried from one scale to the next

# A pixel-space term added to the objective (a video's temporal loss): the images being
# optimised (K,C,h,w) at any scale -> (K,) weighted losses. It resizes its own references.
Prior = Callable[[torch.Tensor], torch.Tensor]
ROWS = ("content", "style", "tv")  # Objective's rows, and "prior" with priors


class Objective:
    """The weighted losses of a batch at one scale: `(R, K)` rows named by `rows`: content,
    style, tv, and one row "prior" when pixel-space `priors` are given (their sum).

    Each row is a term of `artconv.losses` (`Content`, `Style`, `TV`, `Pixel`), made once
    here with its targets: relative to its target's magnitude with `weights.relative`
    (--loss-scale auto); with region masks (`regions`, (S,1,h,w) at this scale's grid, one
    per style image) style k is matched within region k (`artconv.losses.Regions`).
    """

    def __init__(self, net: Net, options: StyleOptions, weights: LossWeights,
                 content_targets: dict[str, torch.Tensor], targets: StyleTargets,
                 regions: torch.Tensor | None = None, priors: Sequence[Prior] = ()) -> None:
        self.net, self.options, self.weights = net, options, weights
        self.priors = tuple(priors)
        if (regions is None) != (targets.regions == 0) or (
                regions is not None and regions.shape[0] != targets.regions):
            raise ValueError(f"Objective: {0 if regions is None else regions.shape[0]} mask "
                             f"regions for targets of {targets.regions} regions")
        self.regions, self.targets = regions, targets
        relative = weights.relative
        self.content = Content(content_targets, relative)
        self.style = Style(
            targets.layers, zip(options.style_layers, weights.style_layers, strict=True),
            None if regions is None else Regions(regions), relative)
        self.tv = TV(options.tv_loss, wrap=bool(getattr(options, "seamless", False)))
        # (row, weight, term); the priors carry their own weights
        self.terms: list[tuple[str, float, Term]] = [
            ("content", weights.content, self.content), ("style", weights.style, self.style),
            ("tv", weights.tv, self.tv)]
        if self.priors:
            self.terms.append(("prior", 1.0, Pixel(self.priors)))
        self.rows = tuple(name for name, _, _ in self.terms)
        self.layers = list(dict.fromkeys([*self.content.layers, *self.style.layers]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.net.features(rgb(x), self.layers)
        with fp32():
            return torch.stack([w * term(feats, x) for _, w, term in self.terms])

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows (R, K) at `x` (detached) and the gradient of their sum w.r.t. `x`.
        `artconv.style.tiled.TiledObjective` computes the same tile by tile."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            parts = self(x)
            (grad,) = torch.autograd.grad(parts.sum(), x)
        return parts.detach(), grad


def rgb(x: torch.Tensor) -> torch.Tensor:
    """A luminance-only image (K,1,h,w) as the RGB the network takes; RGB as is."""
    return x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)


class InPlaceAdam(torch.optim.Adam):
    """torch's Adam, its single-tensor update bit for bit (the same state, so `warm_start`
    and `adam_state` are unchanged), without its image-sized temporaries: torch computes
    the denominator in two new tensors (24 bytes per pixel in fp32 at the step, on top of
    the moments), here it is computed in the gradient's buffer, which the update has no
    more use for once the moments are updated. The gradient is therefore spent: `step`
    sets `.grad` to None. Plain Adam only (no weight decay, amsgrad or maximize)."""

    def __init__(self, params: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, foreach=False)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        if closure is not None:
            raise ValueError("InPlaceAdam.step takes no closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                state = self.state[p]
                if not state:  # as torch's _init_group
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = float(state["step"])
                step_size = lr / (1 - beta1**step)
                denom = torch.sqrt(exp_avg_sq, out=grad).div_((1 - beta2**step) ** 0.5)
                p.addcdiv_(exp_avg, denom.add_(eps), value=-step_size)
                p.grad = None


class EMA:
    """Bias-corrected exponential moving average of the iterates (as Adam's moments)."""

    def __init__(self, start: torch.Tensor, decay: float) -> None:
        self.decay, self.accum = decay, 1.0
        self.value = torch.zeros_like(start)
        self.update(start)

    def update(self, x: torch.Tensor) -> None:
        self.accum *= self.decay
        self.value.mul_(self.decay).add_(x, alpha=1 - self.decay)

    def get(self) -> torch.Tensor:
        return self.value / (1 - self.accum)


@dataclass
class ScaleRun:
    """What one scale of a run keeps: the images being optimised (one leaf per image), the
    optimisers, the iterate average, and the content the result is composed with."""

    params: list[torch.Tensor]
    optimizers: list[torch.optim.Optimizer]
    adam: bool
    ema: EMA | None
    content: torch.Tensor  # (K,3,h,w) at this scale: luminance mode recolours with it
    lum: bool

    @classmethod
    def start(cls, x: torch.Tensor, content: torch.Tensor, options: StyleOptions, lum: bool,
              adam_state: AdamState | None) -> ScaleRun:
        """Start a scale from `x` (K,C,h,w), Adam warm-started from the previous scale."""
        # One leaf per image: L-BFGS then keeps a history per image (a joint history would
        # couple the images), and Adam's per-element update is unchanged by the split.
        # Contiguous: clone() keeps odd strides (a 1x1 image's (3,1,1) tensor passes for
        # channels_last, and interpolation keeps that), and L-BFGS views each grad flat.
        params = [x[i:i + 1].detach().clone(memory_format=torch.contiguous_format)
                  .requires_grad_(True) for i in range(x.shape[0])]
        adam = options.optimizer == "adam"
        if adam:
            optimizers: list[torch.optim.Optimizer] = [InPlaceAdam(
                params, lr=options.learning_rate(), betas=(0.9, 0.99))]
            if adam_state is not None:
                warm_start(optimizers[0], params, adam_state)
        else:  # max_iter=1: one loss evaluation per step(); the history survives the calls
            optimizers = [CompactLBFGS([p], lr=options.learning_rate(),  # torch's iterates
                                       history_size=options.lbfgs_history,
                                       tolerance_change=-1) for p in params]
        ema = EMA(torch.cat(params).detach(), options.avg_decay) if options.avg_decay else None
        return cls(params, optimizers, adam, ema, content, lum)

    def evaluate(self, objective: Objective, read: bool) -> torch.Tensor | None:
        """Losses and gradients at the current images; the (3, K) losses on the host when
        `read` (the one host sync of a step), else None."""
        for p in self.params:
            p.grad = None
        parts, grad = objective.value_and_grad(self._images())
        for i, p in enumerate(self.params):
            p.grad = grad[i:i + 1].contiguous()  # L-BFGS views it flat
        return parts.double().cpu() if read else None

    def advance(self, per_image: Sequence[float]) -> None:
        """One optimiser step from the gradients `evaluate` left (L-BFGS needs each image's
        loss, read in `evaluate`)."""
        if self.adam:
            self.optimizers[0].step()
            with torch.no_grad():
                for p in self.params:
                    p.clamp_(0, 1)  # the box constraint, as crowsonkb
        else:
            for opt_k, loss_k in zip(self.optimizers, per_image, strict=True):
                opt_k.step(lambda loss_k=loss_k: loss_k)  # gradient is already in .grad
        if self.ema is not None:
            self.ema.update(self._images())

    def iterate(self) -> torch.Tensor:
        """The result of this scale so far (K,C,h,w): the averaged iterate if averaging.
        Read only: with one image it is the image being optimised itself, not a copy."""
        with torch.no_grad():
            if self.ema is not None:
                return self.ema.get().clamp(0, 1)
            return self._images()

    def current(self) -> torch.Tensor:
        """The current result as an RGB image (K,3,h,w) in [0, 1]."""
        y = self.ema.get() if self.ema is not None else self._images()
        y = y.clamp(0, 1)
        return color.with_luminance(y, self.content).clamp(0, 1) if self.lum else y

    def _images(self) -> torch.Tensor:
        """The images being optimised as one (K,C,h,w) tensor: with one image, its leaf
        detached (cat always copies: an image-sized copy at the end of every scale)."""
        if len(self.params) == 1:
            return self.params[0].detach()
        return torch.cat(self.params).detach()

    def close(self) -> None:
        """The scale is over: let the optimiser state and the gradients go (`iterate` still
        gives the result). Read `adam_state` first if the next scale wants it."""
        for p in self.params:
            p.grad = None
        self.optimizers = []

    def adam_state(self) -> AdamState | None:
        """Adam's moments per image, for the next scale's warm start."""
        if not self.adam:
            return None
        return [dict(self.optimizers[0].state[p]) for p in self.params]


def warm_start(opt: torch.optim.Adam, params: list[torch.Tensor], old: AdamState) -> None:
    """Carry Adam's moments to the new scale, resized (crowsonkb's scale_adam)."""
    for p, state in zip(params, old, strict=True):
        if not state:
            continue
        hw = p.shape[-2:]
        opt.state[p] = {
            "step": state["step"].clone(),
            "exp_avg": F.interpolate(state["exp_avg"], size=hw, mode="bicubic"),
            "exp_avg_sq": F.interpolate(state["exp_avg_sq"], size=hw, mode="bilinear").relu_(),
        }


def loss_figures(values: torch.Tensor, rows: Sequence[str] = ROWS) -> dict[str, float]:
    """The losses of a batch (R, K), rows named `rows`, summed over the batch, and their
    total."""
    figures = {name: float(v) for name, v in zip(rows, values.sum(1), strict=True)}
    figures["loss"] = sum(figures.values())
    return figures
