"""The temporal term (issue 23, `--temporal-weight`): a second "frame" made by a small
random motion plus noise; the network learns to move its output with its input."""

from __future__ import annotations

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.fast import data
from artconv.fast.train import (
    MOTION_SHIFT,
    TEMPORAL_AUTO,
    Trainer,
    moved,
    random_motion,
    temporal_loss,
)
from artconv.fast.train_options import TrainOptions
from artconv.io.images import load_image
from tests.conftest import BACKBONE_SOURCE, make_image


def test_the_motion_is_small_and_the_identity_moves_nothing():
    image = torch.rand(2, 3, 24, 24)
    still = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]).expand(2, 2, 3)
    same, inside = moved(image, still)
    assert torch.allclose(same, image, atol=1e-6) and bool(inside.all())
    theta = random_motion(1000, torch.Generator().manual_seed(0))
    assert theta[:, :, 2].abs().max() <= 2 * MOTION_SHIFT + 1e-6  # shift, normalised
    assert (theta[:, :, :2] - torch.eye(2)).abs().max() < 0.05  # turn and zoom: slight


def test_the_term_is_one_for_a_network_that_only_passes_its_input_through():
    """Calibration: the output moved exactly with the input and kept its noise."""
    crops = torch.rand(2, 3, 48, 48)

    def passthrough(x, clamp=False):
        return x

    value = temporal_loss(passthrough, crops, crops, torch.Generator().manual_seed(0),
                          torch.device("cpu"), "fp32")
    assert value.shape == (2,) and torch.allclose(value, torch.ones(2), atol=0.1)


def test_training_with_the_term_makes_the_network_steadier(tmp_path):
    net = tmp_path / "lossnet.py"
    net.write_text(BACKBONE_SOURCE)
    paths = [make_image(tmp_path / f"p{i}.png", (48, 40), seed=i) for i in range(12)]
    photos, _ = data.scan([str(p) for p in paths])
    train_set, held = data.split(photos, 2)
    crops = torch.stack([data.center_crop(data.load_photo(p, 32), 32) for p in held])
    style = load_image(make_image(tmp_path / "style.png", (40, 40), seed=99))
    unsteadiness = []
    for weight in ("0", "1"):
        trainer = Trainer(TrainOptions(
            backbone=f"{net}:build", content_layers=("r2",), style_layers=("r1", "r2"),
            precision="fp32", device="cpu", crop=32, width=8, blocks=1, batch_size=4,
            temporal_weight=weight))
        trainer.set_styles([style])
        assert trainer.rows[-1] == ("temporal" if weight == "1" else "tv")
        batches = data.PhotoSet(train_set, crop=32, batch_size=4, seed=0)
        for step in range(40):
            trainer.step(batches.batch(step), data.step_generator(0, step, 1))
        with torch.no_grad():
            out = trainer.net(crops, clamp=False)
            unsteadiness.append(float(temporal_loss(
                trainer.net, crops, out, torch.Generator().manual_seed(5), trainer.device,
                "fp32").mean()))
    assert unsteadiness[1] < 0.5 * unsteadiness[0]


def test_the_option_takes_a_number_or_auto():
    assert TrainOptions(temporal_weight="auto").temporal() == "auto"
    assert TrainOptions(temporal_weight="2.5").temporal() == 2.5
    assert TEMPORAL_AUTO > 0
    for bad in ("often", "-1", "inf"):
        with pytest.raises(ArtconvError, match=f"--temporal-weight '{bad}'"):
            TrainOptions(temporal_weight=bad).validated()
