"""What a features run writes: each image's array, PCA picture and heat map, resolved from
-o / --out-dir / --pca (with {stem}) and checked before any work (`artconv.outputs`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from artconv import outputs
from artconv.errors import ArtconvError
from artconv.features.arrays import SUFFIXES as ARRAY_SUFFIXES
from artconv.features.arrays import array_format
from artconv.features.options import FeatureOptions
from artconv.io.images import SAVE_FORMATS, image_hw

STEM = "{stem}"
PICTURE_SUFFIXES = tuple(SAVE_FORMATS)


@dataclass(frozen=True)
class FeatureFiles:
    """One input image and the files its features go to."""

    image: Path
    array: Path | None = None
    pca: Path | None = None
    heat: Path | None = None
    # The option each output came from ("-o", "--out-dir", "--pca"), for messages.
    flags: Mapping[str, str] = field(default_factory=dict)

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.array, self.pca, self.heat) if p is not None]

    def writes(self) -> list[tuple[str, Path]]:
        """(option, path) of every file this image writes, recipe sidecars included."""
        out = []
        for what, path in (("array", self.array), ("pca", self.pca), ("heat", self.heat)):
            if path is None:
                continue
            label = self.flags.get(what, "output")
            out.append((label, path))
            if path.suffix.lower() not in (".png", ".pt", ".safetensors"):
                out.append((f"{label} (recipe)", outputs.sidecar(path)))
        return out


def plan_files(images: Sequence[Path], opts: FeatureOptions, output: str | None = None,
               out_dir: str | None = None, array_format: str = "npy",
               pca: str | None = None) -> list[FeatureFiles]:
    """Resolve -o / --out-dir / --pca (with {stem} and {parent}) into each image's files."""
    _check_arguments(len(images), opts, output, out_dir, array_format, pca)
    flags = {"array": "--out-dir" if out_dir else "-o", "heat": "--out-dir" if out_dir else "-o",
             "pca": "--pca" if pca else "--out-dir"}
    planned = []
    for image in images:
        if out_dir:
            files = _in_folder(image, Path(out_dir), opts, array_format.lstrip("."))
        else:
            files = _from_output(image, opts, output)
        files = replace(files, pca=Path(_fill(pca, image)) if pca else files.pca, flags=flags)
        if opts.similar_to and files.heat is None:
            raise ArtconvError("--similar-to: give -o HEAT.png (or --out-dir DIR) for the map")
        planned.append(files)
    written = [p for f in planned for p in f.outputs]
    clash = next((p for p in written if written.count(p) > 1), None)
    if clash is not None:
        raise ArtconvError(f"{clash}: several outputs would write this file (two images with "
                           "the same name? put {parent} or distinct names in the pattern)")
    return planned


def _check_arguments(count: int, opts: FeatureOptions, output: str | None,
                     out_dir: str | None, array_format: str, pca: str | None) -> None:
    if output and out_dir:
        raise ArtconvError("-o and --out-dir: give one (--out-dir names files DIR/STEM.EXT)")
    for flag, value in (("-o", output), ("--pca", pca)):
        if count > 1 and value and STEM not in value:
            raise ArtconvError(f"{flag} {value}: {count} images would all write it; put "
                               f"{STEM} in the name or use --out-dir")
    if pca and Path(pca).suffix.lower() not in PICTURE_SUFFIXES:
        raise ArtconvError(f"--pca {pca}: must be an image file ({_pictures()})")
    if opts.pca_shared and not (pca or out_dir):
        raise ArtconvError("--pca-shared: give --pca 'DIR/{stem}.png' or --out-dir DIR")
    if out_dir and f".{array_format.lstrip('.')}" not in ARRAY_SUFFIXES:
        raise ArtconvError(f"--format {array_format}: choose one of "
                           f"{', '.join(s[1:] for s in ARRAY_SUFFIXES)}")


def _in_folder(image: Path, folder: Path, opts: FeatureOptions, ext: str) -> FeatureFiles:
    """--out-dir DIR: DIR/STEM.EXT, plus STEM.similar.png and STEM.pca.png when asked for."""
    return FeatureFiles(image, folder / f"{image.stem}.{ext}",
                        pca=folder / f"{image.stem}.pca.png" if opts.pca_shared else None,
                        heat=folder / f"{image.stem}.similar.png" if opts.similar_to else None)


def _from_output(image: Path, opts: FeatureOptions, output: str | None) -> FeatureFiles:
    """-o FILE: an array, or with --similar-to the heat map picture."""
    if not output:
        return FeatureFiles(image)
    path = Path(_fill(output, image))
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return FeatureFiles(image, array=path)
    if suffix not in PICTURE_SUFFIXES:
        raise ArtconvError(f"-o {output}: unknown format '{path.suffix}' (arrays: "
                           f"{', '.join(ARRAY_SUFFIXES)}; heat map: {_pictures()})")
    if not opts.similar_to:
        raise ArtconvError(f"-o {output}: an image output is the --similar-to X,Y heat map "
                           "(for a PCA picture use --pca FILE.png)")
    return FeatureFiles(image, heat=path)


def _fill(pattern: str, image: Path) -> str:
    return pattern.replace(STEM, image.stem).replace("{parent}", image.parent.name)


def _pictures() -> str:
    return ", ".join(PICTURE_SUFFIXES)


# -- checks before any work -----------------------------------------------------------------------
def check_write_paths(planned: Sequence[FeatureFiles], opts: FeatureOptions) -> None:
    """Before any work: no file a run writes is one of the files it reads (any image, the
    weights, the backbone), no two writes name one file, and every folder can be written."""
    outputs.check_write_paths([w for files in planned for w in files.writes()],
                              outputs.files_read([files.image for files in planned],
                                                 [opts.to_dict()]))


def check_files(files: FeatureFiles, opts: FeatureOptions) -> None:
    """Fail before any compute: an output that is an input or unwritable, bad
    combinations, points off the image."""
    check_write_paths([files], opts)
    if opts.upsample == "none":
        if files.pca or files.heat:
            raise ArtconvError("--pca / --similar-to need per-pixel features: use --upsample "
                               "bilinear or nearest")
        if files.array is not None and not array_format(files.array).maps:
            raise ArtconvError(f"{files.array}: --upsample none gives one map per layer; "
                               "write .npz, .pt or .safetensors")
    if opts.similar_to:
        x, y = opts.similar_to
        h, w = image_hw(files.image)
        if not (0 <= x < w and 0 <= y < h):
            raise ArtconvError(f"--similar-to {x},{y}: outside {files.image} ({w}x{h} px: "
                               f"x 0..{w - 1}, y 0..{h - 1})")
