"""Data-parallel training on a Ray cluster (issue 23): `artconv train ... --engine ray
--workers N [--address HOST:PORT]`.

Ray Train runs the same `artconv.fast.train.train` on N workers (`TorchTrainer`: one
process group, gloo on CPUs, NCCL on GPUs). Each step every worker draws the same global
batch of --batch-size crops (a step's crops depend only on (seed, step)), trains on its own
equal part of it through DistributedDataParallel (which averages the gradients), and the
per-crop losses are gathered back, so the run is the single-process run with the same seed
up to float rounding, and its checkpoint, loss curve and model are the local trainer's.

Worker 0 owns the work folder (checkpoint, records, previews, model file); the others train
into a scratch folder of their own, after copying worker 0's checkpoint to resume from the
same state (Adam's moments included). So the work folder and the photos must be on storage
every worker sees (README, "Training on a Ray cluster"). A dead worker makes Ray restart the
whole group (`MAX_FAILURES` times), which resumes from the last checkpoint, as re-running the
command does after the driver itself was killed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from artconv.engine import Callback, Step
from artconv.errors import ArtconvError
from artconv.fast.checkpoint import CHECKPOINT, work_folder
from artconv.fast.train import Log, Trainer, TrainResult, train
from artconv.fast.train_options import TrainOptions
from artconv.io.files import url_of

INSTALL_HINT = '--engine ray: Ray Train is not installed; pip install "artconv[ray]"'
# Restarts of the worker group after a worker died (each resumes from the last checkpoint).
MAX_FAILURES = 3


def import_ray_train() -> Any:
    """The `ray` module with `ray.train.torch` loaded, or an ArtconvError with the install
    hint (Ray Train also needs the extra's pandas and pyarrow, hence not just `import ray`)."""
    # The Train V2 API (a worker's return value, failures per worker) is opt-in from Ray 2.43
    # and the default later: ask for it, so every Ray the extra allows behaves alike.
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    try:
        import ray
        import ray.train.torch  # noqa: F401 - loads ray.train and ray.train.torch
    except ImportError:
        raise ArtconvError(INSTALL_HINT) from None
    return ray


def check_workers(options: TrainOptions, workers: int) -> None:
    """One line for a worker count that cannot split --batch-size into equal parts."""
    if workers < 1:
        raise ArtconvError(f"--workers {workers}: must be at least 1")
    if options.batch_size % workers:
        raise ArtconvError(f"--batch-size {options.batch_size}: not divisible by --workers "
                           f"{workers} (each worker trains on an equal part of the batch)")


class DistributedTrainer(Trainer):
    """A `Trainer` on one Ray Train worker: its training forward runs through DDP (which
    all-reduces the gradients in backward) on this worker's part of the global batch, and
    `step` returns the losses of the whole batch (gathered), as a single process would."""

    def __init__(self, options: TrainOptions | None = None, **kw: Any) -> None:
        ray_torch = import_ray_train().train.torch
        device = ray_torch.get_device()
        opts = options or TrainOptions()
        if device.type == "cuda":  # this worker's GPU, not every worker's cuda:0
            opts = opts.replace(device=str(device))
        super().__init__(opts, **kw)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        # --seed made the same first weights on every worker; DDP broadcasts worker 0's
        self.model = ray_torch.prepare_model(self.net, move_to_device=False)

    def step(self, batch: torch.Tensor, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        part = batch.shape[0] // self.world
        rows = super().step(batch[self.rank * part:(self.rank + 1) * part], generator)
        parts = [torch.empty_like(rows) for _ in range(self.world)]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts, 1)


def _worker(config: dict[str, Any]) -> TrainResult | ArtconvError:
    """One Ray Train worker: `train` into the shared work folder (worker 0) or a scratch
    copy of its checkpoint (the others)."""
    rank = import_ray_train().train.get_context().get_world_rank()
    output = Path(config["output"])
    callback, log = config["callback"], config["log"]
    scratch = None
    if rank > 0:
        scratch = Path(tempfile.mkdtemp(prefix="artconv-train-"))
        shared = work_folder(output) / CHECKPOINT
        output = scratch / output.name
        if shared.exists():
            work_folder(output).mkdir()
            shutil.copy2(shared, work_folder(output) / CHECKPOINT)
        callback = log = None
    try:
        return train(config["options"], config["styles"], config["images"], output,
                     callback=_report_only(callback), log=log,
                     trainer_class=DistributedTrainer)
    except ArtconvError as exc:
        # the same bad input on every worker: told once, not retried as a dead worker is
        return exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _report_only(callback: Callback | None) -> Callback | None:
    """A callback that cannot stop the run: one worker stopping alone would leave the others
    waiting for it in the next step's gradient exchange."""
    if callback is None:
        return None

    def tell(step: Step) -> None:
        callback(step)

    return tell


def worker_line(line: str) -> None:
    """A `log` for `train_on_ray` that shows each line once on the driver's console: Ray
    forwards a worker's standard output, and Ray Train's own `print` would also log it."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def _absolute(source: str | Path) -> str:
    """Workers run in folders of their own: paths are made absolute on the driver."""
    return url_of(str(source)) or os.path.abspath(source)


def train_on_ray(options: TrainOptions, styles: Sequence[str | Path], images: Sequence[str],
                 output: str | Path, *, workers: int, address: str = "auto",
                 callback: Callback | None = None, log: Log | None = None) -> TrainResult:
    """`train` as data-parallel training on `workers` Ray Train workers (one CPU, or one GPU
    when the cluster has a GPU per worker and --device allows it). `address`: "auto" (a
    running cluster, else a new local one) or HOST:PORT. `callback` and `log` run in
    worker 0 and travel there by pickling (print works; the callback cannot stop the run).
    Returns worker 0's `TrainResult`."""
    options = options.validated()
    check_workers(options, workers)
    ray = import_ray_train()
    output = Path(_absolute(output))
    started = _connect(ray, address)
    try:
        return _fit(ray, options, styles, images, output, workers, callback, log)
    finally:
        if started:
            ray.shutdown()


def _connect(ray: Any, address: str) -> bool:
    """Join the cluster (as `artconv batch --engine ray` does); True when this call started
    Ray, and so must shut it down."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": "WARNING", "configure_logging": True}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **quiet)
            except ConnectionError:
                ray.init(**quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ArtconvError(f"--address {address}: cannot join a Ray cluster "
                           f"({str(exc).splitlines()[0]})") from None
    return True


def _fit(ray: Any, options: TrainOptions, styles: Sequence[str | Path], images: Sequence[str],
         output: Path, workers: int, callback: Callback | None, log: Log | None
         ) -> TrainResult:
    have = ray.cluster_resources()
    use_gpu = options.device.startswith("cuda") or (options.device == "auto"
                                                    and have.get("GPU", 0) >= workers)
    kind = "GPU" if use_gpu else "CPU"
    if have.get(kind, 0) < workers:  # else Ray would wait for them for ever
        raise ArtconvError(f"--workers {workers}: the Ray cluster has {have.get(kind, 0):g} "
                           f"{kind}(s); each worker takes one")
    folder = work_folder(output)
    fresh = not folder.exists()
    trainer = ray.train.torch.TorchTrainer(
        _worker,
        train_loop_config={"options": options, "styles": [_absolute(s) for s in styles],
                           "images": [_absolute(s) for s in images], "output": str(output),
                           "callback": callback, "log": log},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=ray.train.RunConfig(
            # Ray Train checks that every worker sees this folder: the work folder must be
            # shared anyway
            name="ray", storage_path=str(folder),
            failure_config=ray.train.FailureConfig(max_failures=MAX_FAILURES),
            # Ray Train's own progress lines would bury worker 0's; its warnings still show
            logging_config=ray.train.LoggingConfig(log_level="WARNING")))
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        _tidy(folder, fresh)
        failures = getattr(exc, "worker_failures", {}) or {}
        first = next(iter(failures.values()), exc)
        line = str(first).strip().splitlines()
        raise ArtconvError(f"--engine ray: training failed after {MAX_FAILURES} restarts "
                           f"({line[-1] if line else type(first).__name__}); re-run the "
                           "command to resume from the last checkpoint") from None
    value = result.return_value
    if isinstance(value, ArtconvError):
        _tidy(folder, fresh)
        raise value
    return value


def _tidy(folder: Path, fresh: bool) -> None:
    """After a refusal nothing is left behind: a work folder this run made (for Ray's run
    records) goes when no checkpoint was written into it."""
    if fresh and not (folder / CHECKPOINT).exists():
        shutil.rmtree(folder, ignore_errors=True)
