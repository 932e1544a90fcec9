"""Writing per-pixel features to files: arrays (memory-mapped when they would not fit in RAM),
PCA pictures and similarity heat maps, each with the engine's recipe.

    engine = FeatureEngine(opts, callback=progress.on_step)
    planned = plan_files(images, opts, output, out_dir, "npy", pca)     # artconv.features.planner
    check_write_paths(planned, opts)                                    # before any work
    writer = FeatureWriter(engine)
    for files in planned:
        check_files(files, opts)
        writer.run(files, say)
    writer.shared_pca(planned, say)                                     # with --pca-shared

`write_features` is one image into one file (batch jobs); `write_result` is the registry's
writer for features `run()` already computed. Every file appears atomically, its recipe
first (`artconv.outputs`): nothing is ever on disk without its recipe.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artconv import outputs
from artconv.engine import Callback, Display, keep_going
from artconv.errors import ArtconvError
from artconv.features.arrays import (
    Features,
    array_format,
    open_npy,
    sidecar_bytes,
    write_array,
)
from artconv.features.engine import FeatureEngine
from artconv.features.extract import Output, allocate
from artconv.features.options import FeatureOptions
from artconv.features.pca import fit_pca, sample_pixels
from artconv.features.pictures import Picture, heat_picture, pca_picture
from artconv.features.plan import FeaturePlan
from artconv.features.planner import FeatureFiles, check_files, plan_files
from artconv.io.images import atomic_output, image_hw, load_image, save_image
from artconv.nets.extractor import FeatureExtractor

Say = Callable[[str], object]
# One image's computed features: in RAM (a tensor, or per-layer maps with upsample none), or
# a memory-mapped .npy.
Computed = Output | np.ndarray


def _quiet(_message: str) -> None:
    pass


class FeatureWriter:
    """Computes each planned image's features with one engine and writes its files."""

    def __init__(self, engine: FeatureEngine) -> None:
        self.engine = engine
        self.opts = engine.options
        self.samples: list[torch.Tensor] = []  # pixels of every image, for a shared basis
        self.groups: list[int] = []  # channels per layer (PCA balances the layers)

    def run(self, files: FeatureFiles, say: Say = _quiet) -> dict[str, Any]:
        """Compute and write one image's files; a JSON-ready summary of what was done."""
        started = time.perf_counter()
        image = load_image(files.image, self.opts.size)
        plan = self.plan(image)
        result = {"image": str(files.image), "shape": plan.shape_record(),
                  "dtype": plan.dtype_name, "bytes": plan.nbytes, "tiles": len(plan.tiles)}
        if not files.outputs:
            say(f"{files.image}: features {plan.shape_text()}, {human(plan.nbytes)}, "
                f"{len(plan.tiles)} tile(s); nothing written (give -o FILE.npy|.npz|.pt|"
                ".safetensors, --pca FILE.png or --out-dir DIR)")
            return result
        with self.extracted(files, image, plan) as feats:
            if files.pca and not self.opts.pca_shared:
                self.save(pca_picture(feats, self.groups), files.pca, files, plan)
            if files.heat:
                self.save(heat_picture(feats, image, self.opts.similar_to,
                                       image_hw(files.image), self.groups),
                          files.heat, files, plan)
            if self.opts.pca_shared:
                self.samples.append(sample_pixels(feats))
        seconds = time.perf_counter() - started
        wrote = [str(p) for p in files.outputs]
        say(f"{files.image} -> {', '.join(wrote)}  {plan.shape_text()}  "
            f"{human(plan.nbytes)}  ({len(plan.tiles)} tile(s), {seconds:.1f} s)")
        return result | {"outputs": wrote, "seconds": round(seconds, 3)}

    def shared_pca(self, planned: Sequence[FeatureFiles], say: Say = _quiet) -> None:
        """One basis on the pixels sampled from every image, then each image's picture."""
        basis = fit_pca(torch.cat(self.samples), self.groups)
        for files in planned:
            if files.pca is None:
                continue
            if files.array is not None and files.array.suffix.lower() == ".npy":
                feats: Computed = np.load(files.array, mmap_mode="r")  # no second pass
                plan = self.engine.plan(feats.shape[-2:])
            else:
                image = load_image(files.image, self.opts.size)
                plan = self.plan(image)
                feats = self.compute(image, plan, allocate(plan))
            self.save(pca_picture(feats, self.groups, basis, len(self.samples)), files.pca,
                      files, plan)
            say(f"{files.image} -> {files.pca} (shared PCA)")

    def plan(self, image: torch.Tensor) -> FeaturePlan:
        plan = self.engine.plan(image.shape[-2:])
        self.groups = [s.channels for s in plan.layers]
        return plan

    def compute(self, image: torch.Tensor, plan: FeaturePlan, out: Output,
                after_tile: Callable[[], object] | None = None) -> Output:
        """The features of `image` into `out`: every feature computed for a file is computed
        here. A callback that stops the engine leaves them incomplete: nothing is written."""
        callback = None
        if after_tile is not None:
            def callback(step: Any) -> bool:
                go = keep_going(self.engine.callback, step)
                after_tile()
                return go
        if not self.engine.extract_into(image, plan, out, callback=callback):
            raise ArtconvError("features: stopped before every tile was computed; nothing "
                               "written")
        return out

    def save(self, picture: Picture, path: Path, files: FeatureFiles, plan: FeaturePlan
             ) -> None:
        recipe = self.engine.recipe([files.image], plan=plan, **picture.record)
        save_image(picture.rgb, path, recipe=recipe, inputs=[files.image])

    # -- storage ------------------------------------------------------------------------
    @contextlib.contextmanager
    def extracted(self, files: FeatureFiles, image: torch.Tensor, plan: FeaturePlan
                  ) -> Iterator[Computed]:
        """Features for `files`, computed into RAM or a memory-mapped .npy; the array file is
        written (or renamed into place) when the block exits cleanly, its recipe first."""
        if not use_memmap(plan, files.array, self.opts.memmap):
            if files.array is not None:
                check_disk(files.array, plan.nbytes)
            feats = self.compute(image, plan, allocate(plan))
            yield feats
            if files.array is not None:
                write_array(feats, files.array, self.recipe(files, plan))
            return
        target = files.outputs[0]
        check_disk(target, plan.nbytes)
        if files.array is not None:  # build the final .npy in place of its temp name
            with atomic_output(files.array, sidecar_bytes(self.recipe(files, plan))) as tmp:
                yield self._memmap(tmp, image, plan)
        else:  # only pictures wanted: a scratch file beside them, removed after
            scratch = target.with_name(f".{target.name}.features.npy.tmp")
            try:
                yield self._memmap(scratch, image, plan)
            finally:
                scratch.unlink(missing_ok=True)

    def _memmap(self, path: Path, image: torch.Tensor, plan: FeaturePlan) -> np.memmap:
        arr = open_npy(path, plan.shape, plan.dtype)
        self.compute(image, plan, torch.from_numpy(arr), after_tile=lambda: release_pages(arr))
        release_pages(arr)
        return arr

    def recipe(self, files: FeatureFiles, plan: FeaturePlan) -> dict[str, Any]:
        return self.engine.recipe([files.image], plan=plan)


def release_pages(arr: np.memmap) -> None:
    """Write what a memory-mapped array holds to its file and unmap its pages from this
    process: written tile by tile, the array then never becomes resident as a whole (a
    100 MP relu1_1 array is 26 GB; the kernel keeps the pages as reclaimable file cache)."""
    arr.flush()
    mapped = getattr(arr, "_mmap", None)  # numpy keeps the mmap object here
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        # A shared file mapping, flushed: dropping its pages loses nothing.
        mapped.madvise(mmap.MADV_DONTNEED)


# -- sizes and machines ---------------------------------------------------------------------------
def use_memmap(plan: FeaturePlan, array: Path | None, mode: str) -> bool:
    """Whether to build the features memory-mapped on disk (--memmap auto|always|never):
    auto when they would take more than half the available RAM. Refuses an array format
    that cannot be built that way when it must be."""
    avail = available_ram()
    if plan.upsample == "none" or mode == "never":  # built in RAM: refuse what cannot fit
        if mode == "always":
            raise ArtconvError("--memmap always: needs per-pixel features (a .npy); "
                               "--upsample none gives one map per layer")
        if avail is not None and plan.nbytes > avail:
            how = ("" if plan.upsample == "none" else "--memmap auto (a .npy built on disk), ")
            raise ArtconvError(
                f"{array or 'features'}: the features need {human(plan.nbytes)} "
                f"({plan.shape_text()}) in RAM but only {human(avail)} is available; use "
                f"{how}--dtype float16, fewer --layers or a smaller --size")
        return False
    too_big = avail is not None and plan.nbytes > avail / 2
    if mode == "auto" and not too_big:
        return False
    if array is not None and array.suffix.lower() != ".npy":
        if mode == "always":
            raise ArtconvError(f"{array}: --memmap always writes .npy only")
        raise ArtconvError(
            f"{array}: the features need {human(plan.nbytes)} ({plan.shape_text()}) "
            f"but only {human(avail or 0)} of RAM is available; write .npy (built "
            "memory-mapped on disk), or use --dtype float16, fewer --layers or --size")
    return True


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


def check_disk(path: Path, nbytes: int) -> None:
    """Refuse, before any work, an array the disk holding `path` has no room for."""
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


# -- entry points ---------------------------------------------------------------------------------
def write_features(image: str | Path, output: str | Path, opts: FeatureOptions, *,
                   extractor: FeatureExtractor, callback: Callback | None = None,
                   progress: Display | None = None) -> dict[str, Any]:
    """One image's features into `output` (an array file, or with `similar_to` a heat-map
    picture): the batch renderer's entry point. `callback`/`progress` as for the engine."""
    (files,) = plan_files([Path(image)], opts, str(output))
    check_files(files, opts)
    engine = FeatureEngine(opts, extractor=extractor, callback=callback, progress=progress)
    return FeatureWriter(engine).run(files)


def write_result(engine: FeatureEngine, features: Features, output: str | Path,
                 inputs: Sequence[str | Path] = ()) -> list[Path]:
    """The registry's writer: one image's features, as `engine.run()` returned them, into
    an array file (.npy, .npz, .pt, .safetensors) with `engine.recipe(inputs)` beside it
    (.npy/.npz, put in place first) or inside; never over one of `inputs`."""
    path = Path(output)
    fmt = array_format(path)
    if not isinstance(features, torch.Tensor) and not fmt.maps:
        raise ArtconvError(f"{path}: --upsample none gives one map per layer; write .npz, "
                           ".pt or .safetensors")
    writes = [("output", path)] + ([("output (recipe)", outputs.sidecar(path))]
                                   if fmt.sidecar else [])
    outputs.check_write_paths(writes, inputs)
    plan = engine.plan_of(features)
    check_disk(path, plan.nbytes)
    write_array(features, path, engine.recipe(inputs, plan=plan))
    return [path]

