"""Writing per-pixel features to files: arrays (.npy/.npz/.pt/.safetensors, memory-mapped
when they would not fit in RAM), PCA pictures and similarity heat maps.

Used by `artconv features` and by batch jobs. Every file appears atomically (written beside
its final name, then renamed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artconv import outputs
from artconv.errors import ArtconvError

ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".safetensors")
STEM = "{stem}"


@dataclass
class Job:
    """One input image and the files it produces."""

    image: Path
    array: Path | None = None
    pca: Path | None = None
    heat: Path | None = None
    # The option each output came from ("-o", "--out-dir", "--pca"), for messages.
    flags: dict[str, str] = field(default_factory=dict)

    def writes(self) -> list[tuple[str, Path]]:
        """(option, path) of every file this job writes, recipe sidecars included."""
        out = []
        for what, path in (("array", self.array), ("pca", self.pca), ("heat", self.heat)):
            if path is None:
                continue
            label = self.flags.get(what, "output")
            out.append((label, path))
            if path.suffix.lower() not in (".png", ".pt", ".safetensors"):
                out.append((f"{label} (recipe)", outputs.sidecar(path)))
        return out


# -- outputs ------------------------------------------------------------------------------------
def plan_jobs(images: list[Path], opts: Any, output: str | None, out_dir: str | None,
              array_format: str, pca: str | None) -> list[Job]:
    """Resolve -o / --out-dir / --pca (with {stem}) into each image's output files."""
    if output and out_dir:
        raise ArtconvError("-o and --out-dir: give one (--out-dir names files DIR/STEM.EXT)")
    several = len(images) > 1
    for flag, value in (("-o", output), ("--pca", pca)):
        if several and value and STEM not in value:
            raise ArtconvError(f"{flag} {value}: {len(images)} images would all write it; put "
                               f"{STEM} in the name or use --out-dir")
    if pca and Path(pca).suffix.lower() not in _image_suffixes():
        raise ArtconvError(f"--pca {pca}: must be an image file ({_image_list()})")
    if opts.pca_shared and not (pca or out_dir):
        raise ArtconvError("--pca-shared: give --pca 'DIR/{stem}.png' or --out-dir DIR")
    jobs = []
    for image in images:
        job = Job(image)
        fill = _filler(image)
        job.flags = {"array": "--out-dir" if out_dir else "-o",
                     "heat": "--out-dir" if out_dir else "-o",
                     "pca": "--pca" if pca else "--out-dir"}
        if out_dir:
            job.array = Path(out_dir) / f"{image.stem}.{array_format.lstrip('.')}"
            job.heat = Path(out_dir) / f"{image.stem}.similar.png" if opts.similar_to else None
            job.pca = Path(out_dir) / f"{image.stem}.pca.png" if opts.pca_shared else None
        elif output:
            path = Path(fill(output))
            if path.suffix.lower() in ARRAY_SUFFIXES:
                job.array = path
            elif path.suffix.lower() in _image_suffixes():
                if not opts.similar_to:
                    raise ArtconvError(f"-o {output}: an image output is the --similar-to X,Y "
                                       "heat map (for a PCA picture use --pca FILE.png)")
                job.heat = path
            else:
                raise ArtconvError(f"-o {output}: unknown format '{path.suffix}' (arrays: "
                                   f"{', '.join(ARRAY_SUFFIXES)}; heat map: {_image_list()})")
        if pca:
            job.pca = Path(fill(pca))
        if opts.similar_to and job.heat is None:
            raise ArtconvError("--similar-to: give -o HEAT.png (or --out-dir DIR) for the map")
        jobs.append(job)
    if out_dir and f".{array_format.lstrip('.')}" not in ARRAY_SUFFIXES:
        raise ArtconvError(f"--format {array_format}: choose one of "
                           f"{', '.join(s[1:] for s in ARRAY_SUFFIXES)}")
    written = [p for j in jobs for p in (j.array, j.pca, j.heat) if p is not None]
    clash = next((p for p in written if written.count(p) > 1), None)
    if clash is not None:
        raise ArtconvError(f"{clash}: several outputs would write this file (two images with "
                           "the same name? put {parent} or distinct names in the pattern)")
    return jobs


def _filler(image: Path):
    def fill(pattern: str) -> str:
        return pattern.replace(STEM, image.stem).replace("{parent}", image.parent.name)
    return fill


def _image_suffixes() -> tuple[str, ...]:
    from artconv.imageio import SAVE_FORMATS

    return tuple(SAVE_FORMATS)


def _image_list() -> str:
    return ", ".join(_image_suffixes())


def network_files(opts: Any) -> list[Path]:
    """The files a run reads besides its images (a weights file, a backbone's .py): outputs
    must not land on them either."""
    files = []
    if opts.weights and Path(opts.weights).is_file():
        files.append(Path(opts.weights))
    if opts.backbone:
        files.append(Path(str(opts.backbone).rpartition(":")[0] or opts.backbone))
    return files


def check_write_paths(jobs: list[Job], opts: Any) -> None:
    """Before any work: no file a run writes is one of its inputs (any image, the weights,
    the backbone), no two writes name one file, and every folder can be written."""
    outputs.check_write_paths([w for job in jobs for w in job.writes()],
                              [job.image for job in jobs] + network_files(opts))


def check_outputs(job: Job, opts: Any) -> None:
    """Fail before any compute: an output that is an input or unwritable, bad
    combinations, points off the image."""
    check_write_paths([job], opts)
    if opts.upsample == "none":
        if job.pca or job.heat:
            raise ArtconvError("--pca / --similar-to need per-pixel features: use --upsample "
                               "bilinear or nearest")
        if job.array is not None and job.array.suffix == ".npy":
            raise ArtconvError(f"{job.array}: --upsample none gives one map per layer; write "
                               ".npz, .pt or .safetensors")
    if opts.similar_to:
        from artconv.imageio import image_hw

        x, y = opts.similar_to
        h, w = image_hw(job.image)
        if not (0 <= x < w and 0 <= y < h):
            raise ArtconvError(f"--similar-to {x},{y}: outside {job.image} ({w}x{h} px: "
                               f"x 0..{w - 1}, y 0..{h - 1})")


# -- running ------------------------------------------------------------------------------------
class Runner:
    """Extracts, stores and draws, image by image, with one network."""

    def __init__(self, fx: Any, opts: Any) -> None:
        from artconv.device import resolve_device, resolve_precision

        self.fx, self.opts = fx, opts
        self.device = resolve_device(opts.device)
        self.precision = resolve_precision(opts.precision, self.device)
        self.fx.to(self.device)
        self.progress: Any = None
        self.samples: list[torch.Tensor] = []
        self.groups: list[int] = []

    def run(self, job: Job, say: Callable[[str], Any] = print) -> dict[str, Any]:
        from artconv.imageio import load_image

        started = time.perf_counter()
        image = load_image(job.image, self.opts.size)
        plan = self.plan(image)
        result = {"image": str(job.image), "shape": _shape(plan), "dtype": _dtype(plan),
                  "bytes": plan.nbytes, "tiles": len(plan.tiles)}
        if not (job.array or job.pca or job.heat):
            say(f"{job.image}: features {_shape_text(plan)}, {human(plan.nbytes)}, "
                   f"{len(plan.tiles)} tile(s); nothing written (give -o FILE.npy|.npz|.pt|"
                   ".safetensors, --pca FILE.png or --out-dir DIR)")
            return result
        with self.extracted(job, image, plan) as feats:
            if job.pca and not self.opts.pca_shared:
                from artconv.pca import fit_pca, pca_rgb, sample_pixels

                basis = fit_pca(sample_pixels(feats), self.groups)
                self.save_picture(pca_rgb(feats, basis), job.pca, job, plan,
                                  picture="pca", pca=basis.describe())
            if job.heat:
                self.heat(feats, image, job, plan)
            if self.opts.pca_shared:
                from artconv.pca import sample_pixels

                self.samples.append(sample_pixels(feats))
        seconds = time.perf_counter() - started
        wrote = [str(p) for p in (job.array, job.pca, job.heat) if p is not None]
        say(f"{job.image} -> {', '.join(wrote)}  {_shape_text(plan)}  "
               f"{human(plan.nbytes)}  ({len(plan.tiles)} tile(s), {seconds:.1f} s)")
        return result | {"outputs": wrote, "seconds": round(seconds, 3)}

    def plan(self, image: torch.Tensor) -> Any:
        from artconv.features import plan_features

        plan = plan_features(self.fx, tuple(image.shape[-2:]), self.opts)
        self.groups = [s.channels for s in plan.layers]
        return plan

    def heat(self, feats: Any, image: torch.Tensor, job: Job, plan: Any) -> None:
        from artconv.imageio import image_hw
        from artconv.pca import heat_overlay, similarity_map

        fh, fw = image_hw(job.image)
        x, y = self.opts.similar_to
        # The point is given in the file's pixels; --size may have resized the image.
        fx_, fy_ = min(plan.width - 1, x * plan.width // fw), min(plan.height - 1,
                                                                  y * plan.height // fh)
        sim = similarity_map(feats, fx_, fy_, self.groups)
        self.save_picture(heat_overlay(image, sim, fx_, fy_), job.heat, job, plan,
                          picture="similarity", point=[x, y], point_in_features=[fx_, fy_],
                          similarity_min=float(sim.min()))

    def shared_pca(self, jobs: list[Job], say: Callable[[str], Any] = print) -> None:
        """One basis on the pixels sampled from every image, then each image's picture."""
        from artconv.pca import fit_pca, pca_rgb

        basis = fit_pca(torch.cat(self.samples), self.groups)
        for job in jobs:
            if job.pca is None:
                continue
            if job.array is not None and job.array.suffix == ".npy":
                feats: Any = np.load(job.array, mmap_mode="r")  # no second forward pass
                plan = None
            else:
                from artconv.imageio import load_image

                image = load_image(job.image, self.opts.size)
                plan = self.plan(image)
                feats = self.compute(image, plan, self.allocate(plan, None))
            self.save_picture(pca_rgb(feats, basis), job.pca, job, plan, picture="pca",
                              pca=basis.describe() | {"shared_over": len(self.samples)})
            say(f"{job.image} -> {job.pca} (shared PCA)")

    # -- storage ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def extracted(self, job: Job, image: torch.Tensor, plan: Any) -> Iterator[Any]:
        """Features for `job`, computed into RAM or a memory-mapped .npy; the array output is
        written (or renamed into place) when the block exits cleanly, its recipe first."""
        from artconv.imageio import atomic_output

        target = job.array or job.pca or job.heat
        if not self.memmapped(plan, job):
            feats = self.compute(image, plan, self.allocate(plan, job.array))
            yield feats
            if job.array is not None:
                self.write_array(feats, job, plan)
            return
        _check_disk(target, plan.nbytes)
        if job.array is not None:  # build the final .npy in place of its temp name
            with atomic_output(job.array, self.meta_bytes(job, plan)) as tmp:
                yield self._memmap(tmp, image, plan)
        else:  # only pictures wanted: a scratch file beside them, removed after
            scratch = target.with_name(f".{target.name}.features.npy.tmp")
            try:
                yield self._memmap(scratch, image, plan)
            finally:
                scratch.unlink(missing_ok=True)

    def _memmap(self, path: Path, image: torch.Tensor, plan: Any) -> np.ndarray:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=_np_dtype(plan),
                                        shape=plan.shape)
        self.compute(image, plan, torch.from_numpy(arr))
        arr.flush()
        return arr

    def memmapped(self, plan: Any, job: Job) -> bool:
        mode = self.opts.memmap
        if plan.upsample == "none":  # per-layer maps are always built in RAM
            if mode == "always":
                raise ArtconvError("--memmap always: needs per-pixel features (a .npy); "
                                   "--upsample none gives one map per layer")
            return False
        if mode == "never":
            return False
        avail = available_ram()
        too_big = avail is not None and plan.nbytes > avail / 2
        if mode == "auto" and not too_big:
            return False
        if job.array is not None and job.array.suffix != ".npy":
            if mode == "always":
                raise ArtconvError(f"{job.array}: --memmap always writes .npy only")
            raise ArtconvError(
                f"{job.array}: the features need {human(plan.nbytes)} ({_shape_text(plan)}) "
                f"but only {human(avail or 0)} of RAM is available; write .npy (built "
                "memory-mapped on disk), or use --dtype float16, fewer --layers or --size")
        return True

    def allocate(self, plan: Any, array: Path | None) -> Any:
        from artconv.features import allocate

        if array is not None:
            _check_disk(array, plan.nbytes)
        return allocate(plan)

    def compute(self, image: torch.Tensor, plan: Any, out: Any) -> Any:
        from artconv.features import extract_into

        extract_into(self.fx, image, plan, out, device=self.device, precision=self.precision,
                     progress=self.progress, description=f"features {plan.height}x"
                     f"{plan.width}")
        return out

    def write_array(self, feats: Any, job: Job, plan: Any) -> None:
        from artconv.imageio import atomic_output

        path = job.array
        meta = self.meta(job, plan)
        # numpy formats carry no metadata: the recipe goes in PATH.json, put in place
        # before the array so that no array is ever on disk without it.
        sidecar = self.meta_bytes(job, plan) if path.suffix in (".npy", ".npz") else None
        with atomic_output(path, sidecar) as tmp:
            if path.suffix == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, feats.numpy())
            elif path.suffix == ".npz":
                arrays = {k: v.numpy() for k, v in feats.items()} if isinstance(feats, dict) \
                    else {"features": feats.numpy()}
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
            elif path.suffix == ".pt":
                torch.save({"features": feats, "meta": meta}, tmp)
            else:
                from safetensors.torch import save_file

                tensors = dict(feats) if isinstance(feats, dict) else {"features": feats}
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                          metadata={"artconv": json.dumps(meta)})

    def meta_bytes(self, job: Job, plan: Any) -> bytes:
        """The recipe and channel map as a `.npy`/`.npz` sidecar holds them."""
        return json.dumps(self.meta(job, plan), indent=1).encode()

    def meta(self, job: Job, plan: Any, **extra: Any) -> dict[str, Any]:
        from artconv.recipe import make_recipe

        extra = extra | ({"features": plan.describe()} if plan is not None else {})
        recipe = make_recipe("features", self.opts, weights=self.fx.identity,
                             inputs=[job.image], device=self.device, precision=self.precision,
                             **extra)
        # Plain JSON types only (torch.__version__ is a str subclass), so a .pt file opens
        # with torch.load(weights_only=True).
        return json.loads(json.dumps(recipe, default=str))

    def save_picture(self, rgb: torch.Tensor, path: Path, job: Job, plan: Any,
                     **extra: Any) -> None:
        from artconv.imageio import save_image

        save_image(rgb, path, recipe=self.meta(job, plan, **extra), inputs=[job.image])


# -- sizes and machines -------------------------------------------------------------------------
def available_ram() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# Room left over besides the array itself: its header, the recipe, and a little for
# whatever else the disk is doing.
DISK_MARGIN = 1_000_000


def _check_disk(path: Path, nbytes: int) -> None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder will be made inside this one
    free = shutil.disk_usage(folder).free
    if nbytes + DISK_MARGIN > free:
        raise ArtconvError(f"{path}: needs {human(nbytes)} on disk plus {human(DISK_MARGIN)} "
                           f"to spare, but only {human(free)} is free in {folder}; use "
                           "--dtype float16, fewer --layers, a smaller --size or another "
                           "folder")


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _shape(plan: Any) -> Any:
    return list(plan.shape) if plan.upsample != "none" else \
        {k: list(v) for k, v in plan.shapes().items()}


def _shape_text(plan: Any) -> str:
    if plan.upsample != "none":
        return f"{tuple(plan.shape)} {_dtype(plan)}"
    maps = ", ".join(f"{k} {tuple(v)}" for k, v in plan.shapes().items())
    return f"{maps} {_dtype(plan)}"


def _dtype(plan: Any) -> str:
    return str(plan.dtype).removeprefix("torch.")


def _np_dtype(plan: Any) -> Any:
    return np.float16 if plan.dtype == torch.float16 else np.float32


def write_features(image: str | Path, output: str | Path, opts: Any, *, extractor: Any,
                   progress: Any = None) -> dict[str, Any]:
    """One image's features into `output` (an array file, or with `similar_to` a heat-map
    image): the batch renderer's entry point."""
    (job,) = plan_jobs([Path(image)], opts, str(output), None, "npy", None)
    check_outputs(job, opts)
    runner = Runner(extractor, opts)
    runner.progress = progress
    return runner.run(job, say=lambda _message: None)
