"""A trained style network on disk: one .safetensors file, weights plus two header entries.

* "artconv": the recipe (JSON) that made it - what `artconv recipe MODEL` prints;
* "artconv_model": {"format": N, "net": "TransformerNet", "width", "blocks", "scale"} (JSON),
  what rebuilds the network. A file whose format is newer than `FORMAT` came from a newer
  artconv and is refused in one line rather than half-loaded.

safetensors holds tensors only (no pickle, nothing runs on load) and keeps a free-form
string header, which is where the recipe lives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from artconv.errors import ArtconvError
from artconv.fast.net import TransformerNet
from artconv.io.files import atomic_path, check_regular_file

FORMAT = 1  # bump when an older artconv could no longer read what this one writes
MODEL_KEY = "artconv_model"
RECIPE_KEY = "artconv"
NET_NAME = "TransformerNet"


def save_model(path: str | Path, net: TransformerNet, recipe: Mapping[str, Any]) -> Path:
    """Write `net`'s weights with `recipe` atomically (the old file stays until the new one
    is complete); returns the path."""
    path = Path(path)
    header = {"format": FORMAT, "net": NET_NAME, **net.config}
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in net.state_dict().items()}
    metadata = {RECIPE_KEY: json.dumps(dict(recipe)), MODEL_KEY: json.dumps(header)}
    with atomic_path(path, suffix_hint=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[TransformerNet, dict[str, Any]]:
    """(the network in eval mode, its recipe) from a model file `save_model` wrote; anything
    else is a one-line `ArtconvError` naming the file."""
    path = Path(path)
    metadata, tensors = _read(path)
    header = _header(path, metadata)
    try:
        recipe = json.loads(metadata.get(RECIPE_KEY) or "{}")
    except json.JSONDecodeError as e:
        raise ArtconvError(f"{path}: the model's recipe is not valid JSON ({e})") from None
    net = net_from_state(path, tensors, width=header["width"], blocks=header["blocks"],
                         scale=header.get("scale", 1.0))
    return net.to(device).eval(), recipe if isinstance(recipe, dict) else {}


def read_header(path: str | Path) -> dict[str, Any]:
    """The network's shape (`width`, `blocks`, `scale`, ...) from a model file's header,
    without reading its tensors (a list of models); one-line `ArtconvError` otherwise."""
    path = Path(path)
    check_regular_file(path)
    try:
        with safe_open(str(path), "pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        raise ArtconvError(f"{path}: not an artconv style model (not a readable safetensors "
                           "file)") from None
    if MODEL_KEY not in metadata:
        raise ArtconvError(f"{path}: not an artconv style model (a safetensors file without "
                           f"the '{MODEL_KEY}' header entry)")
    return _header(path, metadata)


def net_from_state(path: Path, state: Mapping[str, torch.Tensor], *, width: int, blocks: int,
                   scale: float = 1.0) -> TransformerNet:
    """A TransformerNet of that shape with `state` loaded; missing, extra or misshapen
    tensors are one line naming the first of them."""
    net = TransformerNet(width=width, blocks=blocks, scale=scale)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        what = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
        more = len(missing) + len(extra) - 1
        raise ArtconvError(f"{path}: not a {NET_NAME} of width {width} with {blocks} blocks "
                           f"({what}{f' and {more} more' if more else ''})")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ArtconvError(f"{path}: not a {NET_NAME} of width {width} with {blocks} "
                               f"blocks ({k} is {tuple(state[k].shape)}, expected "
                               f"{tuple(v.shape)})")
    net.load_state_dict({k: state[k].float() for k in own})
    return net


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    if path.is_dir():
        raise ArtconvError(f"{path}: is a folder, not a model file")
    if not path.exists():
        raise ArtconvError(f"{path}: no such model file")
    check_regular_file(path)
    try:
        with safe_open(str(path), "pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            if MODEL_KEY not in metadata:
                raise ArtconvError(f"{path}: not an artconv style model (a safetensors file "
                                   f"without the '{MODEL_KEY}' header entry)")
            return metadata, {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except ArtconvError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtconvError(f"{path}: not an artconv style model (not a readable safetensors "
                           f"file: {first})") from None


def _header(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    try:
        header = json.loads(metadata[MODEL_KEY])
        fmt = int(header["format"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ArtconvError(f"{path}: not an artconv style model (its '{MODEL_KEY}' header "
                           "entry is garbled)") from None
    if fmt > FORMAT:
        raise ArtconvError(f"{path}: made by a newer artconv (model format {fmt}; this "
                           f"artconv reads format {FORMAT} and older): upgrade artconv to "
                           "use it")
    if header.get("net") != NET_NAME or not all(k in header for k in ("width", "blocks")):
        raise ArtconvError(f"{path}: not an artconv style model (network "
                           f"{header.get('net')!r}, expected {NET_NAME} with width and blocks)")
    return header
