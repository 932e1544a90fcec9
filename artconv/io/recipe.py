"""The recipe an output carries: everything needed to make it again."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from artconv._version import __version__
from artconv.errors import ArtconvError
from artconv.io.files import IMAGE_EXTENSIONS, url_of
from artconv.outputs import (
    CLIP_FOLDER_RECORD,
    CLIP_WORK_SUFFIX,
    FRAME_NAME,
    frame_path,
    frames_done,
)


def make_recipe(engine: str, options: Any, *, weights: str, inputs: Sequence[Any] = (),
                device: str | torch.device | None = None, precision: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """A JSON-ready record: engine, full options (with their seed), weights identity,
    inputs, the device and precision actually used, and artconv/torch versions."""
    return {
        "artconv": __version__,
        "engine": engine,
        "options": options.to_dict(),
        "seed": getattr(options, "seed", None),
        "weights": weights,
        "inputs": [_describe_input(i) for i in inputs],
        "device": str(device) if device is not None else None,
        "precision": precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def _describe_input(value: Any) -> str:
    if isinstance(value, (str, Path)):
        return url_of(value) or str(value)  # a URL that went through Path lost a slash
    return f"<{type(value).__name__}>"


def read_any_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe any artconv output carries: an image's PNG chunk or sidecar, a feature
    array's `.json` sidecar (.npy/.npz), a `.pt` file's "meta", a `.safetensors` header's
    "artconv" entry, a sidecar `.json` given directly, or a clip's: its `OUT.mp4.json`
    sidecar, else (a clip not encoded yet) the last frame finished in its work folder
    `OUT.mp4.frames/`; a folder of frames artconv wrote gives its last frame's."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        return frames_recipe(p)
    if suffix in (".npy", ".npz"):
        sidecar = p.with_name(p.name + ".json")
        if not sidecar.is_file():
            _must_exist(p)
            raise ArtconvError(f"{p}: carries no artconv recipe (no sidecar {sidecar.name})")
        return _parse(p, _read_text(sidecar))
    if suffix == ".json":
        recipe = _parse(p, _read_text(p))
        if "engine" not in recipe:  # some other JSON file
            raise ArtconvError(f"{p}: carries no artconv recipe (no 'engine' entry)")
        return recipe
    if suffix == ".pt":
        return _checked(p, _pt_meta(p))
    if suffix == ".safetensors":
        return _parse(p, _safetensors_meta(p))
    if suffix and suffix not in IMAGE_EXTENSIONS:  # a clip (or any other output + sidecar)
        return _clip_recipe(p)
    from artconv.io.images import read_recipe

    return read_recipe(p)


def _clip_recipe(p: Path) -> dict[str, Any]:
    sidecar = p.with_name(p.name + ".json")
    if sidecar.is_file():
        return _parse(sidecar, _read_text(sidecar))  # a broken one is named itself
    folder = p.with_name(p.name + CLIP_WORK_SUFFIX)
    if folder.is_dir() and (frames_done(folder) or (folder / CLIP_FOLDER_RECORD).is_file()):
        # Not encoded yet (stopped, or still running): say so, the frames so far and where.
        return {**frames_recipe(folder, p), "unfinished": True, "work_folder": str(folder)}
    if not p.exists():
        raise ArtconvError(f"{p}: no such file")
    _must_exist(p)
    raise ArtconvError(f"{p}: carries no artconv recipe (no sidecar {sidecar.name})")


def frames_recipe(folder: Path, named: Path | None = None) -> dict[str, Any]:
    """The recipe of a folder of frames artconv wrote (a clip's work folder or frames
    output, a zoom video's folder): its last finished frame's, with the frame count in place
    of that frame's number and losses; its clip.json when no frame is finished. `named`:
    the path to name in a message (the clip whose work folder this is)."""
    from artconv.io.images import read_recipe

    done = frames_done(folder)
    if done:
        recipe = dict(read_recipe(frame_path(folder, done)))
        recipe.pop("frame", None)
        recipe.pop("losses", None)  # that frame's alone, not the clip's
        return {**recipe, "frames": done}
    record = folder / CLIP_FOLDER_RECORD
    if record.is_file():
        return {**_parse(record, _read_text(record)), "frames": 0}
    raise ArtconvError(f"{named or folder}: is a folder, and holds no artconv clip frames "
                       f"({FRAME_NAME.format(1)}) or {CLIP_FOLDER_RECORD}")


def _must_exist(p: Path) -> None:
    if p.is_dir():
        raise ArtconvError(f"{p}: is a folder, not a file")
    if not p.exists():
        raise ArtconvError(f"{p}: no such file")
    from artconv.io.images import check_regular_file

    check_regular_file(p)


def _read_text(p: Path) -> str:
    _must_exist(p)
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ArtconvError(f"{p}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _pt_meta(p: Path) -> Any:
    _must_exist(p)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtconvError(f"{p}: not a readable torch file ({first})") from None
    if not isinstance(data, dict) or "meta" not in data:
        raise ArtconvError(f"{p}: carries no artconv recipe (no 'meta' entry)")
    return data["meta"]


def _safetensors_meta(p: Path) -> str:
    from safetensors import safe_open

    _must_exist(p)
    try:
        with safe_open(str(p), "pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtconvError(f"{p}: not a readable safetensors file ({first})") from None
    if "artconv" not in metadata:
        raise ArtconvError(f"{p}: carries no artconv recipe (no 'artconv' header entry)")
    return metadata["artconv"]


def _parse(p: Path, text: str) -> dict[str, Any]:
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtconvError(f"{p}: artconv recipe is not valid JSON ({e})") from None
    return _checked(p, recipe)


def _checked(p: Path, recipe: Any) -> dict[str, Any]:
    if not isinstance(recipe, dict):
        raise ArtconvError(f"{p}: artconv recipe is not a JSON object")
    return recipe
