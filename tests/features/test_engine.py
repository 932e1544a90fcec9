"""The features engine on the engine contract: a batch in, (K, C, H, W) out, one step per
tile per image, stopping, Ctrl-C, the one recipe; and the registry's writer for its result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artconv.engine import Interrupted, Step
from artconv.errors import ArtconvError
from artconv.features import FeatureOptions, pixel_features
from artconv.features.arrays import FORMATS
from artconv.features.engine import FeatureEngine
from artconv.features.files import FeatureWriter, write_features, write_result
from artconv.io.recipe import read_any_recipe
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.tiling import Tile
from tests.conftest import make_image, tiny_sequential

FP32 = {"precision": "fp32", "device": "cpu"}


def engine(callback=None, **overrides) -> FeatureEngine:
    opts = FeatureOptions(layers=("r1", "r3"), **FP32).replace(**overrides)
    return FeatureEngine(opts, extractor=FeatureExtractor(tiny_sequential(), opts.pooling),
                         callback=callback)


def batch(k: int = 2, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.rand(k, 3, h, w, generator=torch.Generator().manual_seed(1))


def test_a_batch_gives_each_images_pixel_features():
    images = batch()
    eng = engine()
    out = eng.run(images)
    assert out.shape == (2, 8 + 16, 24, 32) and out.dtype == torch.float32
    for k in range(2):
        alone = pixel_features(images[k], ["r1", "r3"], extractor=eng.fx, **FP32)
        torch.testing.assert_close(out[k], alone, rtol=0, atol=0)
    assert eng.run(images[0]).shape == (1, 24, 24, 32)  # one (3, H, W) image is a batch of 1


def test_upsample_none_returns_one_dict_of_maps_per_image():
    images = batch()
    out = engine(upsample="none").run(images)
    assert isinstance(out, list) and len(out) == 2
    assert {k: tuple(v.shape) for k, v in out[1].items()} == {"r1": (8, 24, 32),
                                                               "r3": (16, 6, 8)}
    alone = pixel_features(images[1], ["r1", "r3"], extractor=FeatureExtractor(
        tiny_sequential()), upsample=None, **FP32)
    for name in alone:
        torch.testing.assert_close(out[1][name], alone[name])


def test_one_step_per_tile_per_image():
    steps: list[Step] = []
    eng = engine(steps.append, tile=8)
    tiles = len(eng.plan((24, 32)).tiles)
    assert tiles > 1 and all(isinstance(t, Tile) for t in eng.plan((24, 32)).tiles)
    eng.run(batch(3))
    assert len(steps) == 3 * tiles
    assert [(s.stage, s.step) for s in steps] == [(k, t) for k in (1, 2, 3)
                                                   for t in range(1, tiles + 1)]
    assert [s.done for s in steps] == list(range(1, 3 * tiles + 1))
    assert {(s.engine, s.stages, s.steps, s.total, s.size) for s in steps} == {
        ("features", 3, tiles, 3 * tiles, (24, 32))}
    assert steps[0].image is None


def test_a_callback_returning_false_stops_and_the_rest_is_zero():
    full = engine().run(batch())
    calls = []
    out = engine(lambda s: calls.append(s) or False, tile=8).run(batch())
    assert len(calls) == 1 and out.shape == full.shape
    assert out[1].abs().sum() == 0  # the second image was never run
    core = engine(tile=8).plan((24, 32)).tiles[0].core
    y0, y1, x0, x1 = core
    torch.testing.assert_close(out[0, :, y0:y1, x0:x1], full[0, :, y0:y1, x0:x1])
    assert out[0, :, y1:, :].abs().sum() == 0


def test_a_per_call_callback_overrides_and_progress_only_listens():
    class Display:
        seen: list[Step] = []

        def on_step(self, step):
            self.seen.append(step)
            return False  # a display's answer never stops the run

    display = Display()
    eng = FeatureEngine(FeatureOptions(layers=("r1",), tile=8, **FP32),
                        extractor=FeatureExtractor(tiny_sequential()),
                        callback=lambda s: False, progress=display)
    out = eng.run(batch(1), callback=lambda s: None)
    assert len(display.seen) == len(eng.plan((24, 32)).tiles) > 1
    assert out.abs().sum() > 0


def test_ctrl_c_hands_back_the_features_so_far():
    def interrupt(step):
        if step.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        engine(interrupt, tile=8).run(batch())
    assert err.value.engine == "features" and err.value.image.shape == (2, 24, 24, 32)
    assert err.value.image[1].abs().sum() == 0


def test_ctrl_c_before_the_first_tile_hands_back_nothing(monkeypatch):
    eng = engine()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eng.fx, "forward", interrupted)
    with pytest.raises(Interrupted) as err:
        eng.run(batch())
    assert err.value.image is None


def test_unknown_layers_are_refused_when_the_engine_is_built():
    with pytest.raises(ArtconvError, match="unknown layer 'nope'"):
        engine(layers=("r1", "nope"))


def test_recipe_is_plain_json_and_names_the_channel_ranges():
    eng = engine()
    plan = eng.plan((24, 32))
    recipe = eng.recipe(["a.png"], plan=plan, picture="pca")
    assert json.loads(json.dumps(recipe)) == recipe
    assert recipe["engine"] == "features" and recipe["inputs"] == ["a.png"]
    assert recipe["picture"] == "pca" and recipe["precision"] == "fp32"
    assert [(x["name"], x["start"], x["stop"]) for x in recipe["features"]["layers"]] == [
        ("r1", 0, 8), ("r3", 8, 24)]
    assert "features" not in eng.recipe(["a.png"])


# -- the registry's writer -----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_write_result_writes_the_array_with_the_engines_recipe(tmp_path, suffix):
    eng = engine()
    out = eng.run(batch(1))[0]
    (path,) = write_result(eng, out, tmp_path / f"f{suffix}", inputs=["a.png"])
    recipe = read_any_recipe(path)
    expected = eng.recipe(["a.png"], plan=eng.plan((24, 32)))
    assert {k: v for k, v in recipe.items() if k != "created"} == {
        k: v for k, v in expected.items() if k != "created"}
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(path), out.numpy())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_result_of_per_layer_maps(tmp_path):
    eng = engine(upsample="none")
    maps = eng.run(batch(1))[0]
    (path,) = write_result(eng, maps, tmp_path / "m.npz")
    back = np.load(path)
    assert back["r3"].shape == (16, 6, 8)
    assert read_any_recipe(path)["features"]["upsample"] == "none"
    with pytest.raises(ArtconvError, match="one map per layer"):
        write_result(eng, maps, tmp_path / "m.npy")


def test_write_result_never_writes_over_an_input(tmp_path):
    eng = engine()
    victim = tmp_path / "in.npy"
    np.save(victim, np.zeros(3))
    with pytest.raises(ArtconvError, match="is an input file"):
        write_result(eng, eng.run(batch(1))[0], victim, inputs=[victim])
    assert np.load(victim).shape == (3,)


def test_write_features_stopped_by_its_callback_writes_nothing(tmp_path):
    image = make_image(tmp_path / "in.png", (32, 24))
    opts = FeatureOptions(layers=("r1",), tile=8, **FP32)
    fx = FeatureExtractor(tiny_sequential())
    with pytest.raises(ArtconvError, match="stopped"):
        write_features(image, tmp_path / "f.npy", opts, extractor=fx, callback=lambda s: False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    steps = []
    write_features(image, tmp_path / "f.npy", opts, extractor=fx, callback=steps.append)
    assert steps and np.load(tmp_path / "f.npy").shape == (8, 24, 32)


def test_the_writer_reads_its_engines_options():
    eng = engine(dtype="float16")
    assert FeatureWriter(eng).opts.dtype == "float16"
