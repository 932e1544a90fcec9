"""The dream engine on the one engine contract: batches, step records, stopping, Ctrl-C,
per-call callbacks, and the names that moved (transforms, zoom) still found where they were."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import artconv
import artconv.deepdream
from artconv.deepdream import engine as dream_engine
from artconv.deepdream import transforms, zoom
from artconv.deepdream.engine import Dreamer, DreamInterrupted, DreamOptions, DreamStep
from artconv.deepdream.prepare import ObjectiveBuilder
from artconv.engine import Interrupted, Step
from artconv.nets.extractor import FeatureExtractor
from tests.conftest import tiny_sequential

_FX: list[FeatureExtractor] = []


def fx() -> FeatureExtractor:
    if not _FX:
        _FX.append(FeatureExtractor(tiny_sequential()))
    return _FX[0]


def dreamer(callback=None, progress=None, **options) -> Dreamer:
    defaults = {"layers": ("r3",), "octaves": 2, "octave_scale": 1.5, "steps": 2, "tile": 0,
                "jitter": 3, "device": "cpu", "precision": "fp32"}
    return Dreamer(DreamOptions(**{**defaults, **options}), extractor=fx(), callback=callback,
                   progress=progress)


def images(k: int = 2, h: int = 24, w: int = 20) -> torch.Tensor:
    return torch.rand(k, 3, h, w, generator=torch.Generator().manual_seed(k))


def test_a_batch_is_each_image_dreamed_as_if_alone():
    batch = images(2)
    d = dreamer()
    out = d.run(batch)
    assert out.shape == (2, 3, 24, 20) and out.device.type == "cpu"
    for k in range(2):
        torch.testing.assert_close(out[k], d.run(batch[k]), rtol=0, atol=0)
    assert d.run(batch[:1]).shape == (1, 3, 24, 20)  # a 4-D input keeps its batch axis
    assert d.run(batch[0]).shape == (3, 24, 20)  # a 3-D one comes back 3-D, as before


def test_steps_are_engine_steps_counted_over_the_whole_call():
    steps: list[Step] = []
    d = dreamer(callback=steps.append)
    d.run(images(2))
    assert dream_engine.StepInfo is Step
    assert all(isinstance(s, DreamStep) and s.engine == "dream" for s in steps)
    assert [s.done for s in steps] == list(range(1, 9)) and {s.total for s in steps} == {8}
    assert [(s.stage, s.step) for s in steps[:4]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert {s.stages for s in steps} == {2} and {s.steps for s in steps} == {2}
    first = steps[0]
    assert (first.octave, first.octaves) == (first.stage, first.stages)  # the old names
    assert first.objective == first.figures["objective"]
    assert first.size == (16, 13) and first.frame == 0
    assert first.image.shape == (2, 3, 16, 13)  # the batch at the octave's size
    assert steps[-1].image.shape == (2, 3, 24, 20)
    assert first.label == "dream octave 1/2 13x16"


def test_a_callback_returning_false_stops_inside_the_batch():
    batch = images(3)
    d = dreamer()
    whole = d.run(batch[0])
    stopper = dreamer(callback=lambda s: s.done < 5)  # first step of the second image
    out = stopper.run(batch)
    assert out.shape == (3, 3, 24, 20)
    torch.testing.assert_close(out[0], whole, rtol=0, atol=0)
    assert not torch.equal(out[1], batch[1])  # one step taken
    torch.testing.assert_close(out[2], batch[2], rtol=0, atol=0)  # never started


def test_ctrl_c_is_the_contract_interrupt_with_the_batch_so_far():
    def interrupt(step):
        if step.done == 6:
            raise KeyboardInterrupt

    batch = images(2)
    with pytest.raises(DreamInterrupted) as caught:
        dreamer(callback=interrupt).run(batch)
    assert isinstance(caught.value, Interrupted) and caught.value.engine == "dream"
    assert caught.value.image.shape == (2, 3, 24, 20)
    torch.testing.assert_close(caught.value.image[0], dreamer().run(batch[0]), rtol=0, atol=0)


def test_ctrl_c_before_any_octave_hands_back_nothing(monkeypatch):
    def interrupt(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(ObjectiveBuilder, "build", interrupt)
    with pytest.raises(Interrupted) as caught:
        dreamer().run(images(1)[0])
    assert caught.value.image is None


def test_progress_is_only_an_extra_callback_and_a_call_may_replace_both():
    class Display:
        def __init__(self):
            self.seen = []

        def on_step(self, step):
            self.seen.append(step.done)
            return False  # a display cannot stop the dream

    display, mine, per_call = Display(), [], []
    d = dreamer(callback=lambda s: mine.append(s.done), progress=display)
    d.run(images(1)[0])
    assert display.seen == mine == [1, 2, 3, 4]
    d.run(images(1)[0], callback=lambda s: per_call.append(s.done))
    assert per_call == [1, 2, 3, 4] and len(mine) == 4 and len(display.seen) == 4


def test_engine_modules_import_no_display():
    code = ("import sys, artconv.deepdream.engine, artconv.deepdream.zoom\n"
            "bad = [m for m in sys.modules if m.split('.')[0] == 'rich' or m in "
            "('artconv.progress', 'artconv.cli', 'artconv.batch')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_moved_names_stay_importable():
    assert dream_engine.affine_warp is transforms.affine_warp
    assert artconv.deepdream.lap_normalize is transforms.lap_normalize
    assert artconv.deepdream.keep_colors is transforms.keep_colors
    # Zoom videos are a driver above the engine: their names live in zoom (and the package).
    assert artconv.deepdream.write_gif is zoom.write_gif
    assert artconv.deepdream.frame_paths is zoom.frame_paths
    assert artconv.deepdream.dream_frames is zoom.dream_frames is artconv.dream_frames
    with pytest.raises(AttributeError):
        dream_engine.no_such_name  # noqa: B018
