"""Data-parallel training on Ray Train (`artconv train --engine ray`): two CPU workers on a
local Ray train what one process trains with the same global batch and seed (the loss of
every step and the final weights, within float rounding), a run whose worker was killed
resumes from its last checkpoint to the same weights, and bad input (a batch the workers
cannot split, Ray not installed) is one line before anything is written.

The Ray tests share one local Ray instance (2 CPUs, `tests.conftest.local_ray`) started by
a module fixture; they are marked `ray` and skipped when Ray Train is not installed."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.fast.distributed import train_on_ray
from artconv.fast.model import load_model
from artconv.fast.train import train
from artconv.io.images import load_image
from tests.conftest import local_ray, run_cli
from tests.fast.test_train import cli_args, training_setup

try:
    import ray
    import ray.train.torch  # noqa: F401 - Ray Train's own extra (pandas, pyarrow)
except ImportError:  # the tests below that need it skip
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray Train not installed (artconv[ray])")
# Two workers each average the gradients of half the batch and DDP averages the two; one
# process averages all four: the same sum in another order, so float32 rounding (~1e-7)
# is all that may differ, and four Adam steps of lr 1e-3 keep it far below these
# (measured: losses equal to 6 digits, outputs in [0, 1] within 1.3e-5, a 300th of one
# 8-bit level).
LOSS_RTOL, OUTPUT_ATOL = 1e-4, 1e-4


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A local Ray instance with 2 CPUs for this module; its GCS address (HOST:PORT)."""
    if ray is None:
        pytest.skip("Ray Train not installed (artconv[ray])")
    with local_ray(tmp_path_factory) as address:
        # the test-only callback below travels by value (workers can't import this module)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield address
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(options, style, photos, folder): 6 photos, a style, the tiny loss network; a global
    batch of 4 (2 crops a worker), 4 steps, a checkpoint every 2."""
    return training_setup(tmp_path_factory.mktemp("ray_train"), 6, batch_size=4, holdout=1,
                          steps=4, checkpoint_every=2)


@pytest.fixture(scope="module")
def single(setup):
    """The same run in one process: its model file."""
    opts, style, photos, tmp = setup
    return train(opts, [style], photos, tmp / "single.safetensors").output


def losses(model: Path) -> list[list[float]]:
    """The loss curve's rows (step, loss, content, style, tv) of a model's run."""
    with open(model.with_name(model.name + ".train") / "losses.csv") as fh:
        return [[float(v) for v in row[:5]] for row in csv.reader(fh) if row[0] != "step"]


# "(name pid=N, ip=A)", "(pid=N)" or a daemon's "(raylet)", coloured or not, before the text
RAY_FORWARD = re.compile(r"\s*(\x1b\[[\d;]*m)*\(([\w.-]+|[\w.-]* ?pid=\d+(, ip=[\d.]+)?)\)")


def ours(stderr: str) -> list[str]:
    """The lines artconv printed, without those Ray forwards from its own processes and
    daemons ("(TrainController pid=...) ...", "(raylet) ... over 95% full": warnings of a
    busy or nearly full machine, which CI machines are)."""
    return [line for line in stderr.strip().splitlines() if not RAY_FORWARD.match(line)]


def assert_matches(model: Path, single: Path, photos: list[str]) -> None:
    """Same loss at every step, same pictures. Not the same weights: a conv bias just
    before an instance norm gets only rounding noise as its gradient (the norm removes
    it), which Adam turns into steps of ~lr either way, with no effect on the output."""
    assert torch.tensor(losses(model)) == pytest.approx(torch.tensor(losses(single)),
                                                       rel=LOSS_RTOL)
    x = torch.stack([load_image(p) for p in photos])
    with torch.no_grad():
        ours, theirs = load_model(model)[0](x), load_model(single)[0](x)
    torch.testing.assert_close(ours, theirs, atol=OUTPUT_ATOL, rtol=0)


@pytest.mark.ray
@needs_ray
def test_two_workers_train_what_one_process_trains(setup, single, ray_address, capsys):
    opts, style, photos, tmp = setup
    output = tmp / "ray.safetensors"
    code, out, err = run_cli(cli_args(opts, style, tmp, output) + [
        "--engine", "ray", "--workers", "2", "--address", ray_address, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["done"] == 4 and len(losses(output)) == 4
    assert_matches(output, single, photos)
    _, recipe = load_model(output)
    assert recipe["steps"] == 4 and recipe["options"]["batch_size"] == 4
    folder = tmp / "ray.safetensors.train"
    assert (folder / "checkpoint.pt").exists() and (folder / "preview.png").exists()
    # bad input found on the workers comes back as the local trainer's one line, unretried
    before = (folder / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(cli_args(opts, style, tmp, output) + [
        "--engine", "ray", "--address", ray_address, "--lr", "0.01"], capsys)
    assert code == 2 and len(ours(err)) == 1, err
    assert "other --lr: 0.001 (now 0.01)" in err
    assert (folder / "checkpoint.pt").read_bytes() == before
    # ... and a fresh run refused there leaves no work folder (nor Ray's records) behind
    poem = tmp / "poem.txt"
    poem.write_text("a poem, not a painting")
    code, _, err = run_cli(cli_args(opts, poem, tmp, tmp / "fresh.safetensors") + [
        "--engine", "ray", "--address", ray_address], capsys)
    assert code == 2 and len(ours(err)) == 1 and "poem.txt: not an image file" in err, err
    assert not (tmp / "fresh.safetensors.train").exists()
    # more workers than the cluster's CPUs is one line, not a wait for ever
    code, _, err = run_cli(cli_args(opts, style, tmp, output) + [
        "--engine", "ray", "--address", ray_address, "--workers", "4"], capsys)
    assert code == 2 and "--workers 4: the Ray cluster has 2 CPU(s)" in err, err


class KillAtStep3:
    """Test-only callback: the first time worker 0 reaches step 3 (one step past the
    checkpoint at 2) it SIGKILLs its own process; later attempts go on."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, step) -> None:
        if step.step == 3 and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.ray
@needs_ray
def test_a_killed_worker_resumes_from_the_last_checkpoint(setup, single, ray_address):
    opts, style, photos, tmp = setup
    output, marker = tmp / "killed.safetensors", tmp / "killed.marker"
    result = train_on_ray(opts, [style], photos, output, workers=2, address=ray_address,
                          callback=KillAtStep3(marker))
    assert marker.exists() and result.done == 4
    log = (tmp / "killed.safetensors.train" / "train.log").read_text()
    assert "resuming killed.safetensors at step 2 of 4" in log
    assert_matches(output, single, photos)
    assert not [p for p in output.parent.rglob("*.tmp")]


def test_a_batch_the_workers_cannot_split_is_one_line_before_ray_starts(setup, capsys):
    opts, style, _, tmp = setup
    output = tmp / "odd.safetensors"
    args = cli_args(opts, style, tmp, output) + ["--batch-size", "3", "--engine", "ray",
                                                 "--workers", "2"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and len(ours(err)) == 1, err
    assert "--batch-size 3: not divisible by --workers 2" in err
    assert not output.exists() and not (tmp / "odd.safetensors.train").exists()


def test_without_ray_the_engine_says_how_to_install_it(setup, monkeypatch, capsys):
    opts, style, photos, tmp = setup
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ArtconvError, match=r'pip install "artconv\[ray\]"'):
        train_on_ray(opts, [style], photos, tmp / "none.safetensors", workers=2)
    code, _, err = run_cli(cli_args(opts, style, tmp, tmp / "none.safetensors")
                           + ["--engine", "ray"], capsys)
    assert code == 2 and len(ours(err)) == 1, err
    assert 'pip install "artconv[ray]"' in err
    assert not (tmp / "none.safetensors.train").exists()
