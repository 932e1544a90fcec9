"""Models by name, by URL or from pytorch/examples' .pth files: `open_model(spec)`.

pytorch/examples' `fast_neural_style` published four models (candy, mosaic, rain-princess,
udnie; BSD-3-Clause) as one zip of .pth state dicts of their `TransformerNet`, whose
parameter names `artconv.fast.net` keeps: they load into `TransformerNet(32, 5, scale=255)`
(those nets see 0-255 pixels). Files saved by old torch also hold `running_mean/var` of the
instance norms, which newer InstanceNorm2d has no use for; they are dropped, as
pytorch/examples' own loader does.

A published model's name downloads the zip once into the cache (as the painting presets'
images are: `artconv.io.files.download`) and takes its member out beside it.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artconv.errors import ArtconvError
from artconv.fast.model import load_model, net_from_state
from artconv.fast.net import TransformerNet
from artconv.fast.options import PUBLISHED_MODELS
from artconv.io.files import atomic_path, download, url_cache_path, url_of
from artconv.nets.weights import read_state_dict
from artconv.outputs import file_sha256

# pytorch/examples fast_neural_style/download_saved_models.py
PUBLISHED_ZIP = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
PUBLISHED = {name: f"{name.replace('-', '_')}.pth" for name in PUBLISHED_MODELS}
PUBLISHED_SOURCE = "https://github.com/pytorch/examples/tree/main/fast_neural_style"
EXAMPLES_SCALE = 255.0  # pytorch/examples' nets take and give 0-255 pixels
_STALE = re.compile(r"in\d+\.running_(mean|var)$|\.num_batches_tracked$")
TORCH_SUFFIXES = (".pth", ".pt")


@dataclass
class Model:
    """A network ready to run, what it was made with, and what identifies its file."""

    net: TransformerNet
    recipe: dict[str, Any]
    path: Path
    sha256: str
    name: str  # as the user gave it (a file, a URL or a published model's name)

    def describe(self) -> dict[str, Any]:
        """What an output's recipe says about the model that made it."""
        return {"model": self.name, "path": str(self.path), "sha256": self.sha256,
                "net": self.net.config, "recipe": self.recipe}


def open_model(spec: str | Path, device: str | torch.device = "cpu") -> Model:
    """The model `spec` names: an artconv .safetensors, a pytorch/examples .pth/.pt, an
    http(s) URL of either, or a published model's name; one-line errors otherwise."""
    name = str(spec)
    if not name:
        raise ArtconvError("--model: give a model file (.safetensors from `artconv train` or "
                           f"a pytorch/examples .pth) or a name ({', '.join(PUBLISHED)})")
    path = _local(name)
    if path.suffix.lower() in TORCH_SUFFIXES:
        net, recipe = load_examples_model(path)
        net = net.to(device).eval()
    else:
        net, recipe = load_model(path, device)
    return Model(net, recipe, path, file_sha256(path), name)


def _local(name: str) -> Path:
    path = Path(name).expanduser()
    if path.exists() or path.is_symlink():
        return path
    url = url_of(name)
    if url is not None:
        return download(url)
    if name in PUBLISHED:
        return published_file(name)
    if path.suffix or path.parent != Path():
        raise ArtconvError(f"{name}: no such model file")
    raise ArtconvError(f"--model {name}: no such model file, and not a published model's "
                       f"name ({', '.join(PUBLISHED)})")


def published_on_disk() -> list[str]:
    """The published models usable without a download (their zip is in the cache)."""
    return list(PUBLISHED) if url_cache_path(PUBLISHED_ZIP).is_file() else []


def published_file(name: str) -> Path:
    """The .pth of the published model `name`, from the cached zip (fetched once)."""
    archive = download(PUBLISHED_ZIP)
    member = PUBLISHED[name]
    dst = archive.with_name(f"{archive.stem}-{member}")
    if dst.is_file():
        return dst
    try:
        with zipfile.ZipFile(archive) as zf:
            found = [m for m in zf.namelist() if Path(m).name == member]
            if not found:
                raise ArtconvError(f"{archive}: the published models' zip has no {member} "
                                   f"(from {PUBLISHED_ZIP}); delete it to fetch it again")
            with atomic_path(dst) as tmp:
                tmp.write_bytes(zf.read(found[0]))
    except zipfile.BadZipFile as e:
        raise ArtconvError(f"{archive}: not a zip ({e}); delete it to fetch "
                           f"{PUBLISHED_ZIP} again") from None
    return dst


def load_examples_model(path: Path) -> tuple[TransformerNet, dict[str, Any]]:
    """A pytorch/examples TransformerNet state dict (any width and number of residual
    blocks; stale running statistics dropped) as a [0, 1] network, and a recipe saying
    where it came from. Read with torch.load(weights_only=True): it never runs code."""
    state = {k: v for k, v in read_state_dict(path).items() if not _STALE.search(k)}
    first = state.get("conv1.conv2d.weight")
    if first is None or first.dim() != 4:
        raise ArtconvError(f"{path}: not a pytorch/examples TransformerNet state dict (no "
                           "conv1.conv2d.weight)")
    blocks = len({k.split(".")[0] for k in state if re.match(r"res\d+\.", k)})
    net = net_from_state(path, state, width=first.shape[0], blocks=blocks,
                         scale=EXAMPLES_SCALE)
    recipe = {"source": PUBLISHED_SOURCE, "format": "pytorch/examples TransformerNet .pth",
              "scale": EXAMPLES_SCALE}
    return net.eval(), recipe
