"""The dream loop's host syncs (issue 16): the objective is read from the device only when
someone looks (a callback every step, a display every FIGURES_EVERY steps) and at each
octave's last step, which still catches a dream gone non-finite; what is dreamed does not
depend on how often it is read."""

from __future__ import annotations

import pytest
import torch

import artconv.deepdream.engine as engine_mod
from artconv.deepdream.engine import FIGURES_EVERY, Dreamer, DreamOptions
from artconv.errors import ArtconvError
from artconv.nets.extractor import FeatureExtractor
from tests.conftest import tiny_sequential


def dreamer(**options) -> Dreamer:
    callback = options.pop("callback", None)
    progress = options.pop("progress", None)
    defaults = {"layers": ("r3",), "octaves": 2, "steps": 12, "tile": 0, "device": "cpu",
                "precision": "fp32"}
    return Dreamer(DreamOptions(**{**defaults, **options}),
                   extractor=FeatureExtractor(tiny_sequential()), callback=callback,
                   progress=progress)


@pytest.fixture
def reads(monkeypatch):
    """Counts the loop's host reads of the objective (`_checked`)."""
    calls: list[int] = []
    real = engine_mod._checked

    def counted(value, grad):
        calls.append(1)
        return real(value, grad)

    monkeypatch.setattr(engine_mod, "_checked", counted)
    return calls


def image() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_no_listener_reads_once_per_octave(reads):
    dreamer().run(image())
    assert len(reads) == 2  # the last step of each of the 2 octaves


def test_a_callback_reads_every_step(reads):
    seen = []
    dreamer(callback=seen.append).run(image())
    assert len(reads) == 24
    assert all("objective" in s.figures for s in seen)


def test_a_display_alone_reads_every_few_steps(reads):
    class Display:
        def __init__(self):
            self.steps = []

        def on_step(self, step):
            self.steps.append(step)

    shown = Display()
    dreamer(progress=shown).run(image())
    per_octave = 12 // FIGURES_EVERY + (12 % FIGURES_EVERY != 0)
    assert len(reads) == 2 * per_octave
    assert len(shown.steps) == 24
    # between reads the figures repeat the last ones read
    assert shown.steps[FIGURES_EVERY].figures == shown.steps[FIGURES_EVERY - 1].figures


def test_the_dream_does_not_depend_on_reading():
    quiet = dreamer().run(image())
    watched = dreamer(callback=lambda step: True).run(image())
    assert torch.equal(quiet, watched)


def test_a_non_finite_dream_is_still_refused_without_a_listener(reads):
    d = dreamer(objective=lambda maps: maps["r3"].mean() * float("nan"), steps=5)
    with pytest.raises(ArtconvError, match="non-finite"):
        d.run(image())
    assert len(reads) == 1  # found at the first octave's last step
