"""Training a fast style network (Johnson, Alahi and Fei-Fei 2016): a `TransformerNet`
learns to do in one forward pass what the style engine's optimisation does per image, with
the same loss terms (`artconv.losses`) on the same feature extractor.

    trainer = Trainer(TrainOptions(crop=256), callback=print)    # the math, no files
    trainer.set_styles([style])                                   # targets, made once
    rows = trainer.step(batch)                                    # (R, K) losses, one step

    result = train(options, ["starry.jpg"], photos, "starry.safetensors")   # the whole run

`Trainer` is the engine: the network, Adam, the loss network and the terms; `step()` takes
a batch of crops (K,3,h,w) in [0, 1]. `train()` is the driver around it: the photos
(`artconv.fast.data`), the work folder with its checkpoint (`artconv.fast.checkpoint`),
the loss curve and the preview sheet (`artconv.fast.records`), resuming, Ctrl-C, and the
model file (`artconv.fast.model.save_model`) with the training recipe. Like the engines it
reports only through a callback (an `artconv.engine.Step` per training step) and a `log`
function for lines worth showing (skipped photos, resuming).

The losses: content at `content_layers` against the batch's own features, style at
`style_layers` against the style images' statistics at --crop x --style-scale, total
variation, and optionally the temporal term (`temporal_loss`). Each is one value per crop,
averaged over the batch; with --loss-scale auto each is relative to its target's own
magnitude, so the weights mean the same on any network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from artconv.device import autocast, fp32, memory_format, resolve_device, resolve_precision
from artconv.engine import Callback, Interrupted, Step, keep_going
from artconv.errors import ArtconvError
from artconv.fast import data as photos_mod
from artconv.fast import records
from artconv.fast.checkpoint import (
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
    work_folder,
)
from artconv.fast.model import save_model
from artconv.fast.net import TransformerNet
from artconv.fast.train_options import SCALE_JITTER, TrainOptions
from artconv.io.files import download, url_of
from artconv.io.images import fit_longest, load_image
from artconv.io.recipe import make_recipe
from artconv.losses import functional as lf
from artconv.losses import terms
from artconv.losses.weights import resolve_weights, weights_kind
from artconv.nets.extractor import FeatureExtractor
from artconv.outputs import check_write_paths, file_sha256, sweep_temporaries

# (content, style, tv) weights with --loss-scale auto (the default), chosen for training
# (README: the measurements behind them); TV is on pixels, as in the style engine. With
# --loss-scale network the style engine's per-network defaults apply (not tuned for
# training).
TRAIN_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "gram": (1.0, 10.0, 2.0),
    "w2": (1.0, 10.0, 2.0),
}
# The temporal term's motion (issue 23; ReReVST, Wang et al. 2020): a second "frame" is the
# crop moved by up to MOTION_SHIFT of its side, turned up to MOTION_TURN degrees and scaled
# by up to MOTION_ZOOM either way, plus Gaussian noise of MOTION_NOISE: what two frames of
# a handheld 25-30 fps clip differ by, and what camera noise and compression add.
MOTION_SHIFT, MOTION_TURN, MOTION_ZOOM, MOTION_NOISE = 0.02, 1.0, 0.02, 0.02
# --temporal-weight auto: on Tiny Darknet (150 steps, 128 px crops; benchmarks/README.md)
# 0.05 made the network 2.3x steadier for 17 % more style error; 0.5 6.5x for 50 % more.
TEMPORAL_AUTO = 0.05
ROWS = ("content", "style", "tv")
PREVIEWS = 4  # photos in the preview sheet when none could be held out


def temporal_weight(options: TrainOptions) -> float:
    """--temporal-weight as a number: auto = `TEMPORAL_AUTO`, 0 = off."""
    value = options.temporal()
    return TEMPORAL_AUTO if value == "auto" else float(value)


class Trainer:
    """The training engine: a `TransformerNet`, Adam, the loss network and the loss terms.

    `extractor` shares a loss network already built (its options' network fields are then
    not used to build one). The network's first weights come from --seed alone."""

    name: ClassVar[str] = "train"

    def __init__(self, options: TrainOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, callback: Callback | None = None,
                 **overrides: Any) -> None:
        opts = options or TrainOptions()
        self.options = opts.replace(**overrides) if overrides else opts.validated()
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.memory_format = memory_format(self.device, self.precision)
        self.fx = extractor if extractor is not None else FeatureExtractor.from_options(
            self.options)
        self.fx.to(self.device, memory_format=self.memory_format)
        self.weights = resolve_weights(self.options, weights_kind(self.fx), auto=TRAIN_WEIGHTS)
        self.temporal_weight = temporal_weight(self.options)
        self.fx.check_size((self.options.crop, self.options.crop), self.layers,
                           what="--crop", where=f" {self.options.crop}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed)
            self.net = TransformerNet(self.options.width, self.options.blocks)
        self.net.to(self.device).train()
        # what a training step runs: the network itself, or a wrapper of it (DDP on Ray)
        self.model: torch.nn.Module = self.net
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.options.lr)
        self.rows = (*ROWS, "temporal") if self.temporal_weight else ROWS
        self.callback = callback
        self.style: terms.Style | None = None

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys([*self.options.content_layers, *self.options.style_layers]))

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.precision):
            return self.fx(x.contiguous(memory_format=self.memory_format), layers)

    # -- targets -----------------------------------------------------------------------------
    def style_size(self) -> int:
        return max(1, round(self.options.crop * self.options.style_scale))

    @torch.no_grad()
    def set_styles(self, styles: Sequence[torch.Tensor], names: Sequence[str] = ()) -> None:
        """The style targets, once: each style image (3,H,W) in [0, 1] at --crop x
        --style-scale (longest side), its statistics blended by --blend."""
        opts = self.options
        blend = opts.blend_weights(len(styles))
        longest = self.style_size()
        stats = []
        for k, image in enumerate(styles):
            hw = fit_longest(image.shape[-2:], longest)
            name = names[k] if k < len(names) else f"style image {k + 1}"
            self.fx.check_size(hw, opts.style_layers, what=name,
                               where=f" at --crop {opts.crop} x --style-scale "
                                     f"{opts.style_scale:g}")
            # not resize_to, which clamps; as the style engine's targets
            x = F.interpolate(image[None].to(self.device, torch.float32), size=hw,
                              mode="bicubic", antialias=True)
            feats = self.features(x, opts.style_layers)
            with fp32():
                stats.append({n: lf.statistics(opts.style_loss, feats[n].float())
                              for n in opts.style_layers})
        targets = terms.style_targets(opts.style_loss, stats, blend)
        self.style = terms.Style(targets, zip(opts.style_layers, self.weights.style_layers,
                                              strict=True), relative=self.weights.relative)

    # -- the losses ----------------------------------------------------------------------------
    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The weighted content, style and TV losses (3, K) of outputs `y` for inputs `x`
        (K,3,h,w): content against `x`'s own features."""
        if self.style is None:
            raise ValueError("Trainer: call set_styles() first")
        opts, w = self.options, self.weights
        with torch.no_grad():
            original = self.features(x, opts.content_layers)
        feats = self.features(y, self.layers)
        with fp32():
            content = terms.Content({n: f.float() for n, f in original.items()},
                                    relative=w.relative)(feats, y)
            style = self.style(feats, y)
            tv = terms.TV(opts.tv_loss, wrap=opts.seamless)(feats, y)
            return torch.stack([w.content * content, w.style * style, w.tv * tv])

    def step(self, batch: torch.Tensor, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        """One Adam step on a batch of crops (K,3,h,w) in [0, 1]; the weighted losses (R, K)
        before the step, detached (rows: `self.rows`). `generator` draws the temporal
        term's motion (a CPU generator, for runs that resume exactly)."""
        x = batch.to(self.device, torch.float32)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            y = self.model(x, clamp=False)
        rows = self.losses(x, y.float())
        if self.temporal_weight:
            moved = temporal_loss(self.model, x, y.float(), generator, self.device,
                                  self.precision)
            rows = torch.cat([rows, self.temporal_weight * moved[None]])
        rows.sum(0).mean().backward()
        self.optimizer.step()
        return rows.detach()

    @torch.no_grad()
    def evaluate(self, crops: torch.Tensor) -> torch.Tensor:
        """The weighted content, style and TV losses (3, K) of the current network on
        `crops` (held-out photos), without training."""
        x = crops.to(self.device, torch.float32)
        self.net.eval()
        with autocast(self.device, self.precision):
            y = self.net(x, clamp=False)
        return self.losses(x, y.float())

    @torch.no_grad()
    def render(self, images: torch.Tensor) -> torch.Tensor:
        """The network's output (K,3,h,w) in [0, 1] for images in [0, 1]."""
        self.net.eval()
        with autocast(self.device, self.precision):
            return self.net(images.to(self.device, torch.float32)).float().clamp(0, 1)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(network weights, Adam's state) as CPU copies, for a checkpoint."""
        net = {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()}
        return net, _to_cpu(self.optimizer.state_dict())

    def load_state(self, net: dict[str, torch.Tensor], optimizer: dict[str, Any]) -> None:
        self.net.load_state_dict(net)
        self.optimizer.load_state_dict(optimizer)  # moves its tensors to the params' device

    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record a trained model carries (the one place it is made): every option,
        the loss network's identity, the weights used, device, precision, versions."""
        extra.setdefault("loss_weights", {**dataclasses.asdict(self.weights),
                                          "temporal": self.temporal_weight})
        extra.setdefault("network", {"net": "TransformerNet", **self.net.config})
        return make_recipe("train", self.options, weights=self.fx.identity, inputs=inputs,
                           device=self.device, precision=self.precision, **extra)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


# -- the temporal term (issue 23) ----------------------------------------------------------------
def random_motion(k: int, generator: torch.Generator | None) -> torch.Tensor:
    """K affine maps (K,2,3) in `F.affine_grid`'s normalised coordinates: a shift of up to
    MOTION_SHIFT of the side, a turn of up to MOTION_TURN degrees, a zoom of up to
    MOTION_ZOOM, each uniform."""
    u = torch.rand(k, 4, generator=generator, dtype=torch.float64) * 2 - 1
    turn = u[:, 0] * math.radians(MOTION_TURN)
    zoom = 1 + u[:, 1] * MOTION_ZOOM
    cos, sin = torch.cos(turn) / zoom, torch.sin(turn) / zoom
    shift = u[:, 2:] * 2 * MOTION_SHIFT  # normalised coordinates span 2
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                        torch.stack([sin, cos, shift[:, 1]], 1)], 1).float()


def moved(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (K,C,h,w) under the maps `theta`, mask (K,1,h,w) of the pixels that came
    from inside the image)."""
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    inside = (grid.abs() <= 1).all(-1, keepdim=True).permute(0, 3, 1, 2)
    return warped, inside.to(images.dtype)


def temporal_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  generator: torch.Generator | None, device: torch.device,
                  precision: str) -> torch.Tensor:
    """(K,): how much the network's output on a moved, noisy copy of each crop differs
    from the same motion applied to its output `y` on the crop `x`, over the pixels the
    motion keeps inside: mean squared difference divided by the noise's own variance, so
    1 means "the output moved no more unsteadily than the input"."""
    theta = random_motion(x.shape[0], generator)
    noise = torch.randn(x.shape, generator=generator).to(device) * MOTION_NOISE
    second, inside = moved(x, theta)
    with autocast(device, precision):
        out = net(second + noise, clamp=False).float()
    expected, _ = moved(y, theta)
    diff = (out - expected).square().mul(inside).sum((1, 2, 3))
    return diff / (inside.sum((1, 2, 3)) * x.shape[1]).clamp_min(1) / MOTION_NOISE ** 2


# -- the driver ----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` did: the model written, the steps done (of `steps`), photos used and set
    aside, speed, and where the work folder's records are."""

    output: Path
    steps: int
    done: int
    photos: int
    heldout: int
    skipped: dict[str, str]
    photos_per_second: float
    folder: Path
    figures: dict[str, float] = field(default_factory=dict)
    heldout_loss: float | None = None
    stopped: bool = False


Log = Callable[[str], object]


def train(options: TrainOptions, styles: Sequence[str | Path], images: Sequence[str],
          output: str | Path, *, callback: Callback | None = None, log: Log | None = None,
          extractor: FeatureExtractor | None = None,
          trainer_class: type[Trainer] = Trainer) -> TrainResult:
    """Train a network for `styles` (image files or URLs) on the photos `images` (what
    `data.list_photos` gives) into the model file `output`, resuming from its work folder.

    Checked before anything is written: the output's paths, the style images, the photos
    (unreadable ones are set aside and named through `log`), the options against a
    checkpoint already there. Ctrl-C finishes the step in progress, writes a checkpoint and
    the model so far and raises `Interrupted`; a callback returning False stops the same
    way but returns (`stopped`)."""
    output = Path(output)
    folder = work_folder(output)
    say = _Logger(folder, log)
    style_paths = [url_of(s) or str(s) for s in styles]
    _check_paths(output, folder, style_paths, images)
    style_images = [load_image(s) for s in style_paths]  # one line for a non-image
    usable, skipped = photos_mod.scan(images)
    if len(usable) < photos_mod.MIN_PHOTOS:
        raise ArtconvError(f"--images: {len(usable)} usable photo(s) of {len(images)} "
                           f"(at least {photos_mod.MIN_PHOTOS} needed)"
                           + (f"; {len(skipped)} could not be read, e.g. {skipped[0][0]}: "
                              f"{skipped[0][1]}" if skipped else ""))
    train_set, held = photos_mod.split(usable, options.holdout)
    trainer = trainer_class(options, extractor=extractor)
    trainer.set_styles(style_images, style_paths)
    opts = trainer.options
    total = opts.total_steps(len(train_set))
    style_record = [{"path": s, "sha256": _sha256(s)} for s in style_paths]
    identity = {"options": opts.identity(), "styles": [s["sha256"] for s in style_record],
                "photos": photos_mod.digest(usable), "loss_network": trainer.fx.identity}
    checkpoint = load_checkpoint(folder, identity)  # refuses another run's, in one line
    sweep_temporaries([output, folder / "losses.csv", folder / "losses.png",
                       folder / "preview.png"])
    for source, reason in skipped:
        say(f"skipped {source}: {reason}")
    run = _Run(trainer, identity, total, folder, say)
    if checkpoint is not None:
        run.restore(checkpoint)
        say(f"resuming {output.name} at step {run.done} of {total}"
            if run.done < total else f"{output.name}: already trained {run.done} steps")
    data = photos_mod.PhotoSet(train_set, crop=opts.crop, batch_size=opts.batch_size,
                               seed=opts.seed, jitter=SCALE_JITTER, broken=run.broken,
                               on_skip=run.skip)
    preview = held or train_set[:PREVIEWS]
    run.style = style_paths[0]
    run.set_preview(preview, bool(held))
    recipe = {"styles": style_record, "photos": {
        "count": len(usable), "training": len(train_set), "heldout": len(held),
        "sha256": photos_mod.digest(usable), "skipped": len(skipped)}}
    callbacks = [c for c in (callback, trainer.callback) if c is not None]
    stopped = False
    if run.done < total:
        say(f"training {output.name}: steps {run.done + 1}-{total}, {len(train_set)} photos "
            f"({len(held)} held out), {opts.crop} px crops x {opts.batch_size}, "
            f"{trainer.device} {trainer.precision}")
    with _deferred_interrupt() as interrupted:
        while run.done < total:
            step = run.done
            run.train_step(data.batch(step), photos_mod.step_generator(opts.seed, step, 1))
            info = run.report(data)
            keep = all([keep_going(c, info) for c in callbacks])
            if run.done % opts.checkpoint_every == 0:
                run.checkpoint()
            if opts.preview_every and run.done % opts.preview_every == 0:
                run.preview()
            if interrupted() or not keep:
                stopped = True
                break
    if not stopped or run.done == total:
        run.preview()
    run.checkpoint()
    record = {**recipe, "steps": run.done, "epochs": round(data.epochs(run.done), 3),
              "photos_skipped": {**dict(skipped), **run.broken}}
    if stopped and run.done < total:
        record["interrupted"] = True
    save_model(output, trainer.net, trainer.recipe(style_paths, **record))
    say(f"wrote {output} after {run.done} of {total} steps")
    if stopped and run.done < total and interrupted():
        raise Interrupted(None, engine=Trainer.name)
    return TrainResult(output, total, run.done, len(train_set), len(held),
                       {**dict(skipped), **run.broken}, run.photos_per_second(), folder,
                       run.figures, run.heldout, stopped and run.done < total)


def _check_paths(output: Path, folder: Path, styles: Sequence[str],
                 images: Sequence[str]) -> None:
    """Every file the run writes, checked against the inputs before anything is written."""
    if output.suffix.lower() != ".safetensors":
        raise ArtconvError(f"--output {output}: a model file ends in .safetensors")
    local = [s for s in (*styles, *images) if url_of(s) is None]
    check_write_paths([("--output", output), ("checkpoint", folder / "checkpoint.pt"),
                       ("loss curve", folder / "losses.csv"),
                       ("preview sheet", folder / "preview.png")], local)


def _sha256(source: str) -> str:
    """A style image's sha256 (a URL's: its cached download, which loading it made)."""
    return file_sha256(download(source) if url_of(source) else Path(source))


class _Logger:
    """Lines worth showing: told to `log` and appended to the work folder's train.log."""

    def __init__(self, folder: Path, log: Log | None) -> None:
        self.folder, self.log = folder, log

    def __call__(self, line: str) -> None:
        if self.log is not None:
            self.log(line)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "train.log", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


class _Run:
    """The state of one `train` call: the step reached, the loss history, the previews,
    the photos set aside, the time spent; checkpoints and records are written from here."""

    def __init__(self, trainer: Trainer, identity: dict[str, Any], total: int, folder: Path,
                 say: _Logger) -> None:
        self.trainer, self.identity, self.total, self.folder = trainer, identity, total, folder
        self.say = say
        self.columns = ("step", "loss", *trainer.rows, "heldout")
        self.history: list[list[float]] = []
        self.previews: list[int] = []
        self.broken: dict[str, str] = {}
        self.done, self.elapsed = 0, 0.0
        self.figures: dict[str, float] = {}
        self.heldout: float | None = None
        self._recent: list[tuple[float, int]] = []  # (seconds, photos) of the last steps
        self._preview: list[photos_mod.Photo] = []
        self._crops: torch.Tensor | None = None
        self._images: list[torch.Tensor] = []
        self._heldout = False
        self.style: str | None = None  # heads the preview sheet

    def restore(self, cp: Checkpoint) -> None:
        if cp.step > 0:
            self.trainer.load_state(cp.net, cp.optimizer)
        torch.set_rng_state(cp.rng)
        self.done, self.elapsed = cp.step, cp.elapsed
        self.history = cp.history.tolist()
        self.broken = dict(cp.broken)
        self.previews = list(cp.previews)

    def skip(self, source: str, reason: str) -> None:
        self.broken[source] = reason
        self.say(f"skipped {source}: {reason}")

    def set_preview(self, photos: Sequence[photos_mod.Photo], heldout: bool) -> None:
        crop = self.trainer.options.crop
        self._preview = list(photos)
        pixels = [photos_mod.load_photo(p, crop) for p in photos]
        self._crops = torch.stack([photos_mod.center_crop(p, crop) for p in pixels])
        self._heldout = heldout
        self._images = [load_image(p.source, crop) for p in photos]

    def train_step(self, batch: torch.Tensor, generator: torch.Generator) -> None:
        start = time.perf_counter()
        rows = self.trainer.step(batch, generator).mean(1).double().cpu()  # one sync a step
        seconds = time.perf_counter() - start
        values = rows.tolist()
        total = sum(values)
        if not math.isfinite(total):
            raise ArtconvError(f"loss became {total} at step {self.done + 1}; the last "
                               "checkpoint is kept (try a smaller --lr or --precision fp32)")
        self.done += 1
        self.elapsed += seconds
        self._recent = [*self._recent[-19:], (seconds, batch.shape[0])]
        self.figures = {"loss": total, **dict(zip(self.trainer.rows, values, strict=True))}
        self.history.append([float(self.done), total, *values, math.nan])

    def photos_per_second(self) -> float:
        seconds = sum(s for s, _ in self._recent)
        return sum(n for _, n in self._recent) / seconds if seconds > 0 else 0.0

    def report(self, data: photos_mod.PhotoSet) -> Step:
        figures: dict[str, float] = {**self.figures, "photos/s": self.photos_per_second()}
        if self.heldout is not None:
            figures["heldout"] = self.heldout
        epoch, _ = data.position(self.done)
        crop = self.trainer.options.crop
        return Step(Trainer.name, 1, 1, self.done, self.total, self.done, self.total,
                    {**figures, "epoch": float(epoch + 1)}, (crop, crop), 0,
                    self._render)

    def _render(self) -> torch.Tensor:
        assert self._crops is not None
        return self.trainer.render(self._crops)

    def preview(self) -> None:
        """Render the preview photos, grow the sheet, measure the held-out loss."""
        if self.done in self.previews:
            return
        folder = self.folder / "preview"
        records.save_previews(folder, self.done,
                              [self.trainer.render(image[None])[0] for image in self._images])
        self.previews.append(self.done)
        records.write_sheet(self.folder / "preview.png", [p.source for p in self._preview],
                            folder, self.previews, thumb=min(256, self.trainer.options.crop),
                            style=self.style)
        if self._heldout and self._crops is not None:
            self.heldout = float(self.trainer.evaluate(self._crops).sum(0).mean())
            if self.history and self.history[-1][0] == self.done:
                self.history[-1][-1] = self.heldout
        self.write_records()

    def write_records(self) -> None:
        history = torch.tensor(self.history, dtype=torch.float64).reshape(
            -1, len(self.columns))
        records.write_csv(self.folder / "losses.csv", self.columns, history)
        records.draw_curve(self.folder / "losses.png", self.columns, history)

    def checkpoint(self) -> None:
        net, optimizer = self.trainer.state()
        history = torch.tensor(self.history, dtype=torch.float64).reshape(
            -1, len(self.columns))
        save_checkpoint(self.folder, Checkpoint(
            self.identity, self.done, net, optimizer, torch.get_rng_state(), history,
            self.columns, dict(self.broken), tuple(self.previews), self.elapsed))
        self.write_records()


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C while training: the step in progress finishes (so the checkpoint is whole),
    then the loop stops; a second Ctrl-C interrupts at once. Off the main thread (a
    worker), signals cannot be caught and nothing changes."""
    hits: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, old)
