"""The loss options' checks, shared by every record that carries the loss fields."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from artconv.errors import ArtconvError
from artconv.losses.options import check_loss_fields
from artconv.style import StyleOptions

GOOD = {"style_layers": ("a", "b"), "style_layer_weights": (), "style_loss": "gram",
        "content_weight": None, "style_weight": None, "tv_weight": None, "tv_loss": "l2",
        "loss_scale": None, "backbone": None}


@pytest.mark.parametrize("change, message", [
    ({"style_layers": ()}, "--style-layers: name at least one layer"),
    ({"style_layer_weights": (1.0,)}, "--style-layer-weights: 1 values for 2 style layers"),
    ({"style_layer_weights": (0.0, 0.0)}, "--style-layer-weights: at least one must be"),
    ({"blend": (0.0, 0.0)}, "--blend: at least one weight must be positive"),
    ({"loss_scale": "relative"}, "--loss-scale 'relative': choose one of auto, network"),
])
def test_one_line_per_bad_loss_option_for_any_record_and_for_style(change, message):
    with pytest.raises(ArtconvError, match=message):
        check_loss_fields(SimpleNamespace(**{**GOOD, **change}))  # e.g. the trainer's record
    if "loss_scale" not in change:  # StyleOptions' own type check words that one itself
        with pytest.raises(ArtconvError, match=message):
            StyleOptions(**{"style_layers": ("relu1_1", "relu2_1"), **change}).validated()


def test_good_loss_options_pass():
    check_loss_fields(SimpleNamespace(**GOOD))
    check_loss_fields(SimpleNamespace(**{**GOOD, "style_layer_weights": (1.0, 0.0),
                                         "blend": (0.5, 0.5), "loss_scale": "auto"}))
