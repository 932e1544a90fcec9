"""Feature arrays on disk: one writer per format, chosen by the file's suffix.

    FORMATS[".npy"].write(features, path, recipe)

Every array appears atomically (written beside its final name, then renamed) together with
its recipe: .pt and .safetensors carry it inside, the numpy formats in `PATH.json`, which is
put in place first, so no array is ever on disk without it (`artconv.outputs`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from artconv.errors import ArtconvError
from artconv.io.images import atomic_output

# One image's features: (C, H, W), or {layer: map} with one map per layer (upsample none).
Features = torch.Tensor | Mapping[str, torch.Tensor]
Recipe = dict[str, Any]


@dataclass(frozen=True)
class ArrayFormat:
    """How one format stores features: `write(features, path, recipe)` writes the file (the
    recipe inside where the format can hold it)."""

    write: Callable[[Features, Path, Recipe], None]
    sidecar: bool  # the recipe goes in PATH.json (the format has no room for it)
    maps: bool  # can hold one map per layer (--upsample none)


def _tensors(features: Features) -> dict[str, torch.Tensor]:
    return dict(features) if isinstance(features, Mapping) else {"features": features}


def _write_npy(features: Features, path: Path, _recipe: Recipe) -> None:
    if not isinstance(features, torch.Tensor):
        raise ArtconvError(f"{path}: .npy holds one array; per-layer maps need .npz, .pt or "
                           ".safetensors")
    with open(path, "wb") as fh:  # an open file: np.save would append .npy to a name
        np.save(fh, features.numpy())


def _write_npz(features: Features, path: Path, _recipe: Recipe) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v.numpy() for k, v in _tensors(features).items()})


def _write_pt(features: Features, path: Path, recipe: Recipe) -> None:
    stored = dict(features) if isinstance(features, Mapping) else features
    torch.save({"features": stored, "meta": recipe}, path)


def _write_safetensors(features: Features, path: Path, recipe: Recipe) -> None:
    save_file({k: v.contiguous() for k, v in _tensors(features).items()}, str(path),
              metadata={"artconv": json.dumps(recipe)})


FORMATS: dict[str, ArrayFormat] = {
    ".npy": ArrayFormat(_write_npy, sidecar=True, maps=False),
    ".npz": ArrayFormat(_write_npz, sidecar=True, maps=True),
    ".pt": ArrayFormat(_write_pt, sidecar=False, maps=True),
    ".safetensors": ArrayFormat(_write_safetensors, sidecar=False, maps=True),
}
SUFFIXES = tuple(FORMATS)


def array_format(path: Path) -> ArrayFormat:
    """The format `path`'s suffix names (any case)."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ArtconvError(f"{path}: unknown array format '{path.suffix}' (choose "
                           f"{', '.join(SUFFIXES)})") from None


def sidecar_bytes(recipe: Recipe) -> bytes:
    """The recipe as a `.npy`/`.npz` sidecar holds it."""
    return json.dumps(recipe, indent=1).encode()


def write_array(features: Features, path: Path, recipe: Recipe) -> None:
    """Write `features` to `path` in the format its suffix names, atomically, the recipe
    first (sidecar) or inside."""
    fmt = array_format(path)
    with atomic_output(path, sidecar_bytes(recipe) if fmt.sidecar else None) as tmp:
        fmt.write(features, tmp, recipe)


def open_npy(path: Path, shape: tuple[int, ...], dtype: torch.dtype) -> np.memmap:
    """A new .npy at `path` mapped into memory, to compute features straight into (see
    `torch.from_numpy`); flush it before the file is renamed into place."""
    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    return np.lib.format.open_memmap(path, mode="w+", dtype=np_dtype, shape=shape)
