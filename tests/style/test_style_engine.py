"""The style engine on the engine contract: step records, stopping, Ctrl-C, the recipe, and
style targets kept across `run()` calls."""

from __future__ import annotations

import json

import pytest
import torch

from artconv.engine import Interrupted, Step
from artconv.io.images import load_image
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StepInfo, StyleOptions, StyleTransfer
from tests.conftest import make_image, tiny_sequential

BASE = {"content_layers": ("r3",), "style_layers": ("r1", "r2", "r3"), "style_weight": 1e7,
        "content_weight": 1e3, "tv_weight": 1e-2, "size": 48, "precision": "fp32",
        "device": "cpu"}


def engine(**options) -> StyleTransfer:
    callback = options.pop("callback", None)
    progress = options.pop("progress", None)
    fx = FeatureExtractor(tiny_sequential())
    return StyleTransfer(StyleOptions(**{**BASE, **options}), extractor=fx, callback=callback,
                         progress=progress)


@pytest.fixture
def content(tmp_path) -> torch.Tensor:
    return load_image(make_image(tmp_path / "c.png"))[None]  # (1,3,40,48)


@pytest.fixture
def style(tmp_path) -> torch.Tensor:
    return load_image(make_image(tmp_path / "s.png", (40, 40), seed=1))


def test_steps_count_over_the_whole_ladder(content, style):
    steps: list[Step] = []
    st = engine(optimizer="adam", scales=(24, 48), iterations=(4, 3), callback=steps.append)
    assert st.name == "style"
    st.run(content, styles=[style])
    assert all(isinstance(s, Step) and isinstance(s, StepInfo) for s in steps)
    assert {s.engine for s in steps} == {"style"}
    assert [s.done for s in steps] == list(range(1, 8)) and {s.total for s in steps} == {7}
    assert [(s.stage, s.step, s.steps) for s in steps] == [
        (1, 1, 4), (1, 2, 4), (1, 3, 4), (1, 4, 4), (2, 1, 3), (2, 2, 3), (2, 3, 3)]
    assert {s.stages for s in steps} == {2}
    assert [s.size for s in steps[3:5]] == [(20, 24), (40, 48)]
    assert set(steps[0].figures) == {"content", "style", "tv", "loss"}
    assert steps[0].image.shape == (1, 3, 20, 24)
    assert (steps[-1].scale, steps[-1].scales, steps[-1].total_step) == (1, 2, 7)  # old names


def test_a_run_callback_replaces_the_engine_callback(content, style):
    mine: list[Step] = []
    theirs: list[Step] = []
    st = engine(iterations=(2,), callback=mine.append)
    st.run(content, [style], callback=theirs.append)
    assert not mine and len(theirs) == 2


@pytest.mark.parametrize("lum", ["none", "luminance"])
def test_stopping_at_a_small_scale_returns_the_output_size(content, style, lum):
    st = engine(scales=(24, 48), iterations=(5,), preserve_colors=lum,
                callback=lambda s: s.done < 2 and None)
    out = st.run(content, [style])
    assert out.shape == (1, 3, 40, 48) and out.min() >= 0 and out.max() <= 1


def test_stopping_at_the_last_step_equals_a_full_run(content, style):
    full = engine(iterations=(4,)).run(content, [style])
    stopped = engine(iterations=(4,), callback=lambda s: s.done < 4).run(content, [style])
    torch.testing.assert_close(stopped, full, rtol=0, atol=0)


def test_ctrl_c_carries_the_result_so_far_at_the_output_size(content, style):
    def callback(step: Step) -> None:
        if step.done == 2:
            raise KeyboardInterrupt

    st = engine(scales=(24, 48), iterations=(5,), callback=callback)
    with pytest.raises(Interrupted) as err:
        st.run(content, [style])
    assert err.value.engine == "style"
    assert err.value.image.shape == (1, 3, 40, 48)
    assert st.current_image().shape == (1, 3, 20, 24)  # the scale it was at, as before


def test_ctrl_c_before_the_first_step_carries_nothing(content, style, monkeypatch):
    st = engine()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.target_maker, "compute", interrupted)
    with pytest.raises(Interrupted) as err:
        st.run(content, [style])
    assert err.value.image is None


def test_a_display_is_told_every_step(content, style):
    class Display:
        def __init__(self):
            self.steps, self.depth = [], 0

        def __enter__(self):
            self.depth += 1
            return self

        def __exit__(self, *exc):
            self.depth -= 1

        def on_step(self, step):
            assert self.depth == 1  # entered for the run, as the engine's own bars were
            self.steps.append(step)

    display = Display()
    st = engine(optimizer="adam", iterations=(12,), progress=display)
    st.run(content, [style])
    assert [s.done for s in display.steps] == list(range(1, 13))
    # with a display only, Adam reads the losses every 10 steps and at the end
    assert [bool(s.per_image) for s in display.steps] == [False] * 9 + [True, False, True]
    assert st.last_figures == dict(display.steps[-1].figures)


def test_per_image_losses_sum_to_the_figures(tmp_path, content, style):
    other = load_image(make_image(tmp_path / "c2.png", seed=2))[None]
    steps: list[StepInfo] = []
    engine(iterations=(2,)).run(torch.cat([content, other]), [style], callback=steps.append)
    assert len(steps[-1].per_image) == 2
    assert steps[-1].figures["loss"] == pytest.approx(sum(steps[-1].per_image))


def test_run_keeps_style_targets_per_style_and_scale(tmp_path, content, style):
    st = engine(scales=(24, 48), iterations=(2,))
    other = load_image(make_image(tmp_path / "s2.png", (30, 30), seed=4))
    first = st.run(content, styles=[style])
    assert st.target_computations == 2  # one per scale
    again = st.run(content, styles=[style.clone()])  # same pixels, another tensor
    assert st.target_computations == 2
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    st.run(content, styles=[other])
    assert st.target_computations == 4
    st.run(content, styles=[style, other])
    assert st.target_computations == 6


def test_colour_preserving_targets_are_not_kept(tmp_path, content, style):
    st = engine(iterations=(1,), preserve_colors="histogram")
    st.run(content, [style])
    st.run(content, [style])
    assert st.target_computations == 2


def test_the_recipe_records_the_loss_weights_and_the_ladder(content, style):
    st = engine(scales=(24, 48), iterations=(1,))
    recipe = st.recipe(["c.png", "s.png"], step=3)
    assert recipe["engine"] == "style" and recipe["inputs"] == ["c.png", "s.png"]
    assert recipe["scales"] == [24, 48] and recipe["step"] == 3
    assert recipe["loss_weights"]["style"] == BASE["style_weight"]
    assert recipe["options"] == st.options.to_dict()
    json.dumps(recipe)


def test_run_starts_from_a_given_image(content, style):
    """`init=` replaces the init option (a video frame starts from the last output, warped):
    one tiny Adam step leaves the result where it started."""
    start = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(3))
    st = engine(iterations=(1,), optimizer="adam", lr=1e-6)
    out = st.run(content, [style], init=start)
    assert out.shape[-2:] == content.shape[-2:]
    from artconv.io.images import resize_to
    assert torch.allclose(out, resize_to(start, tuple(out.shape[-2:])).clamp(0, 1), atol=1e-4)


def test_a_prior_pulls_the_result_and_is_reported(content, style):
    """A pixel-space prior (a video's temporal loss) is optimised with the other terms and
    shows as the figure "prior"."""
    goal = torch.zeros_like(content)

    def dark(x):
        return 1e3 * (x - goal).square().flatten(1).mean(1)

    seen = []
    plain = engine(iterations=(8,)).run(content, [style])
    pulled = engine(iterations=(8,)).run(content, [style], priors=[dark], callback=seen.append)
    assert "prior" in seen[-1].figures
    assert seen[-1].figures["prior"] < seen[0].figures["prior"]
    assert pulled.mean() < plain.mean() - 0.05
