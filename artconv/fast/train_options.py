"""`TrainOptions`: everything `artconv train` and `artconv.fast.train` accept, one typed
record (the CLI's flags, the checkpoint's identity and the model's recipe all read it). No
torch here, so `artconv train --help` starts fast.

The loss fields mean what they mean for `artconv style` (same names, same help); only the
defaults differ where a network being trained wants another strength than one optimised
image (README, "Fast style networks").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from artconv.errors import ArtconvError
from artconv.losses.options import check_loss_fields
from artconv.options import CoreOptions, opt

# With neither --steps nor --epochs: steps of a run (README: why this many).
DEFAULT_STEPS = 4000
# Random crops are taken from each photo resized so its shorter side is between --crop and
# this many times --crop (scale jitter: a few hundred photos give far more distinct crops).
SCALE_JITTER = 1.5
# Options that a resumed run may change: how long it runs, how often it reports, where.
RESUMABLE = ("steps", "epochs", "preview_every", "checkpoint_every", "device")


@dataclass
class TrainOptions(CoreOptions):
    """A fast style network's training: the network, the losses (as `artconv style`), the
    data and the run."""

    # -- the network being trained -------------------------------------------------------
    width: int = opt(32, "Channels of the network's first stage (32 as Johnson et al.; 16 "
                         "= the light variant, ~3x faster).", min=1, max=512)
    blocks: int = opt(5, "Residual blocks of the network.", min=0, max=64)
    # -- losses: the style engine's flags -------------------------------------------------
    content_layers: tuple[str, ...] = opt(("relu2_2",), "Layers whose features the result "
                                          "must keep from the photo (several are "
                                          "averaged, so the weight keeps its meaning).")
    style_layers: tuple[str, ...] = opt(
        ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        "Layers whose feature statistics the result takes from the style images.")
    style_layer_weights: tuple[float, ...] = opt(
        (), "Relative weight per style layer, normalised to sum 1 (default: equal).", min=0)
    style_loss: Literal["gram", "w2"] = opt(
        "gram", "gram: MSE of Gram matrices (Gatys); w2: Wasserstein-2 distance of the "
        "features' mean and covariance (crowsonkb).")
    content_weight: float | None = opt(None, "Content loss weight (default: for training, "
                                       "see README).", min=0)
    style_weight: float | None = opt(None, "Style loss weight (default: for training, see "
                                     "README).", min=0)
    tv_weight: float | None = opt(None, "Total-variation (smoothness) weight (default: for "
                                  "training, see README).", min=0)
    tv_loss: Literal["l2", "l1"] = opt("l2", "Total variation: l2 (smooth) or l1 (keeps "
                                       "edges).")
    loss_scale: Literal["auto", "network"] = opt(
        "auto", "auto: every loss relative to its target's own magnitude, so the weights "
        "mean the same on any network; network: the raw losses with weights per network "
        "scale (VGG).")
    blend: tuple[float, ...] = opt((), "Weights of several style images, e.g. 0.7,0.3 "
                                   "(normalised to sum 1); default equal.", min=0)
    style_scale: float = opt(1.0, "Style image size relative to --crop (its longest side).",
                             gt=0)
    temporal_weight: str = opt(
        "0", "Stability for video (ReReVST): weight of the difference between the output of "
        "a slightly moved crop and the same motion applied to the output; auto or a "
        "number, 0 = off.")
    # -- data -------------------------------------------------------------------------------
    crop: int = opt(256, "Training crops are CROP x CROP px (random place, scale, flip).",
                    min=16, max=4096)
    batch_size: int = opt(4, "Crops per step.", min=1, max=4096)
    holdout: int = opt(4, "Photos kept out of training for the previews and the held-out "
                          "loss (at most a fifth of them).", min=0, max=64)
    # -- the run ----------------------------------------------------------------------------
    lr: float = opt(1e-3, "Adam's learning rate.", gt=0, max=1)
    steps: int | None = opt(None, f"Training steps (default {DEFAULT_STEPS}, or --epochs).",
                            min=1)
    epochs: float | None = opt(None, "Passes over the training photos instead of --steps.",
                               gt=0)
    preview_every: int = opt(0, "Every N steps render the held-out photos into the preview "
                                "sheet (0 = only at the end).", min=0)
    checkpoint_every: int = opt(200, "Write a checkpoint every N steps (and on Ctrl-C); a "
                                     "re-run of the same command resumes from it.", min=1)

    def check(self) -> None:
        super().check()
        if self.steps is not None and self.epochs is not None:
            raise ArtconvError("--steps and --epochs: give one of them")
        check_loss_fields(self)
        if self.seamless:
            raise ArtconvError("--seamless: not for training (a trained network pads by "
                               "reflection; its outputs do not tile)")
        self.temporal()  # a bad --temporal-weight fails here, with the others

    # -- derived ---------------------------------------------------------------------------
    def total_steps(self, photos: int) -> int:
        """The steps of the run: --steps, or --epochs over `photos` training photos."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, round(self.epochs * photos / self.batch_size))
        return DEFAULT_STEPS

    def temporal(self) -> float | str:
        """--temporal-weight as a number (0 = off) or "auto"."""
        text = str(self.temporal_weight).strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise ArtconvError(f"--temporal-weight {self.temporal_weight!r}: a number or "
                               "auto") from None
        if not (value >= 0 and value < float("inf")):
            raise ArtconvError(f"--temporal-weight {self.temporal_weight!r}: must be a "
                               "finite number of at least 0")
        return value

    def blend_weights(self, n_styles: int) -> list[float]:
        """--blend normalised to sum 1 (equal when not given), checked against the count."""
        blend = self.blend or (1.0,) * n_styles
        if len(blend) != n_styles:
            raise ArtconvError(f"--blend: {len(blend)} weights for {n_styles} style image(s)")
        return [b / sum(blend) for b in blend]

    def identity(self) -> dict[str, object]:
        """What must match for a checkpoint to be continued: every option but those a
        resumed run may change (`RESUMABLE`)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE}
