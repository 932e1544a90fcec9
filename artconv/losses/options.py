"""The checks of the loss options, for every record that carries them (`artconv style`'s
StyleOptions, `artconv train`'s options): each declares the fields with its own defaults
and help (what suits an optimisation need not suit training), and checks them here. No
torch, so `--help` stays fast."""

from __future__ import annotations

from artconv.errors import ArtconvError
from artconv.losses.weights import LossFields


def check_loss_fields(options: LossFields) -> None:
    """Cross-field checks of the loss options (`LossFields`, and --blend where the record
    has it); one line each."""
    if not options.style_layers:
        raise ArtconvError("--style-layers: name at least one layer")
    weights = options.style_layer_weights
    if weights and len(weights) != len(options.style_layers):
        raise ArtconvError(f"--style-layer-weights: {len(weights)} values "
                           f"for {len(options.style_layers)} style layers")
    if weights and not sum(weights) > 0:
        raise ArtconvError("--style-layer-weights: at least one must be positive")
    blend = getattr(options, "blend", ())
    if blend and not sum(blend) > 0:
        raise ArtconvError("--blend: at least one weight must be positive")
    if options.loss_scale not in (None, "auto", "network"):
        raise ArtconvError(f"--loss-scale {options.loss_scale!r}: choose one of auto, "
                           "network")
