"""Getting VGG weights: torchvision's ImageNet files, neural-style's caffe files, a local
file, or a seeded random init. Every file, downloaded or named, goes through
`read_state_dict`, which never unpickles code (`weights_only=True`)."""

from __future__ import annotations

import pickletools
import re
import urllib.error
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn
from torchvision.models import VGG16_Weights, VGG19_Weights

from artconv.errors import ArtconvError, ArtconvWarning
from artconv.io.files import check_regular_file
from artconv.nets import vgg
from artconv.outputs import file_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

TORCHVISION_URLS = {"vgg16": VGG16_Weights.IMAGENET1K_V1.url,
                    "vgg19": VGG19_Weights.IMAGENET1K_V1.url}
# The caffe VGGs converted to torchvision's key layout, as neural-style-pt downloads them.
CAFFE_URLS = {"vgg16": "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
              "vgg19": "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth"}
KNOWN_FILES = {Path(u).stem: "torchvision" for u in TORCHVISION_URLS.values()} | \
              {Path(u).stem: "caffe" for u in CAFFE_URLS.values()}


@dataclass(frozen=True)
class Normalization:
    """How RGB in [0, 1] becomes what a network was trained on:
    `(x * scale)`, channels reversed when `bgr`, then `(x - mean) / std`."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False

    @classmethod
    def torchvision(cls) -> Normalization:
        return cls(IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def caffe(cls) -> Normalization:
        return cls(CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), 255.0, True)

    @classmethod
    def named(cls, kind: str) -> Normalization:
        return cls.caffe() if kind == "caffe" else cls.torchvision()


class Normalize(nn.Module):
    def __init__(self, norm: Normalization) -> None:
        super().__init__()
        self.norm = norm
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1) / norm.scale,
                             persistent=False)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1) / norm.scale,
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class LoadedWeights:
    state: dict[str, torch.Tensor] | None  # None: keep the random init
    normalization: Normalization
    identity: str  # what a recipe records, e.g. "imagenet:vgg19-dcbb9e9d.pth"


def resolve(arch: str, weights: str, preprocess: str = "auto") -> LoadedWeights:
    """Turn the `weights` option into a state dict and the normalisation it expects."""
    if weights == "random":
        warnings.warn("--weights random: the network is untrained, so results are noise, "
                      "not meaningful art", ArtconvWarning, stacklevel=2)
        return LoadedWeights(None, Normalization.torchvision(), "random")
    if weights in ("imagenet", "caffe"):
        urls = TORCHVISION_URLS if weights == "imagenet" else CAFFE_URLS
        path = fetch(urls[arch], what=f"{weights} {arch} weights")
        kind = "torchvision" if weights == "imagenet" else "caffe"
        return LoadedWeights(read_state_dict(path), Normalization.named(kind),
                             f"{weights}:{path.name}")
    path = Path(weights).expanduser()
    if not path.exists():
        raise ArtconvError(f"{weights}: no such weights file (or use imagenet, caffe, random)")
    check_regular_file(path)  # before anything opens it: a named pipe blocks every reader
    kind = preprocess if preprocess != "auto" else _guess_preprocess(path)
    return LoadedWeights(read_state_dict(path), Normalization.named(kind),
                         f"file:{path.name}:sha256:{file_sha256(path)[:12]}:{kind}")


def checkpoint_path(url: str) -> Path:
    """Where torch hub keeps a downloaded file (`$TORCH_HOME/hub/checkpoints/NAME`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def fetch(url: str, *, what: str) -> Path:
    """The cached file for `url`, downloading it with a progress bar on first use."""
    dst = checkpoint_path(url)
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dst), progress=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ArtconvError(
            f"{dst}: {what} are not cached and could not be downloaded ({reason}). "
            f"On a machine with internet fetch {url} and copy it to {dst}, or pass "
            "--weights PATH to a local file, or --weights random to try things out") from None
    return dst


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat {key: tensor} from .safetensors or a .pth/.pt state dict, never running code."""
    path = Path(path)
    check_regular_file(path)  # a named pipe would block torch.load forever
    try:
        if path.suffix == ".safetensors":
            try:
                return load_file(str(path))
            except SafetensorError as exc:
                raise ArtconvError(f"{path}: not a valid safetensors file ({exc})") from None
        with warnings.catch_warnings():
            # "Detected pickle protocol 4": torch's advice to file an issue, not the user's
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except ArtconvError:
        raise
    except IsADirectoryError:
        raise ArtconvError(f"{path}: is a folder, not a weights file") from None
    except OSError as exc:
        raise ArtconvError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - a garbled pickle raises almost anything
        raise _load_error(path, exc) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ArtconvError(f"{path}: expected a state dict of tensors")
    return data


# What torch's weights-only unpickler says when a real pickle asks for something beyond
# tensors; every other failure means the bytes are not a torch file at all.
_CODE_MARKERS = ("Unsupported global", "unsupported GLOBAL", "unrecognized function",
                 "Can only create new object", "Can only build")
# Pickle opcodes that import or call something: harmless data never needs them.
_CALL_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}
_SCAN_BYTES = 1 << 24  # a pickle's calls come before its bulk data


def _load_error(path: Path, exc: BaseException) -> ArtconvError:
    """Tell a pickle that would run code (refused) from a file that is no torch file."""
    text = str(exc)
    calls = _pickle_calls(_pickle_bytes(path))
    if not calls and any(marker in text for marker in _CODE_MARKERS):
        named = re.search(r"GLOBAL ([\w.]+)", text)  # a later pickle of a legacy file
        calls = [named.group(1) if named else "a global"]
    if calls:
        return ArtconvError(f"{path}: refused: it would run code when loaded ({calls[0]}); a "
                            "weights file holds only tensors")
    # torch's first line is the same boilerplate for every failure; the useful part
    # (e.g. "Unsupported operand 149") follows this marker.
    detail = (text.partition("WeightsUnpickler error:")[2] or text).strip()
    detail = detail.splitlines()[0] if detail else type(exc).__name__
    what = (f"a pickle, but not of torch tensors: {detail}" if calls is not None
            else _looks_like(path) or detail)
    return ArtconvError(f"{path}: not a torch or safetensors weights file ({what})")


def _pickle_bytes(path: Path) -> bytes:
    """The start of the pickle torch reads: data.pkl inside a zip file, else the file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return b""
                with archive.open(name) as fh:
                    return fh.read(_SCAN_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_SCAN_BYTES)
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return b""


def _pickle_calls(data: bytes) -> list[str] | None:
    """What a well-formed pickle would import or call (names, best effort), or None when
    `data` does not start with one. Only parses; nothing is unpickled."""
    calls: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("GLOBAL", "INST"):
                calls.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                calls.append(".".join(strings[-2:]) if len(strings) >= 2 else "a global")
            elif op.name in _CALL_OPS and not calls:
                calls.append(f"opcode {op.name}")
    except Exception:  # noqa: BLE001 - not a pickle (text, an image, random bytes)
        return None
    return calls


def _looks_like(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return ""
    if not head:
        return "the file is empty"
    kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
             b"PK\x03\x04": "a zip archive without torch's data.pkl", b"%PDF": "a PDF"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return f"it is {kind}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "neither a zip archive nor a pickle"
    return "it is JSON" if text.lstrip()[:1] in ("{", "[") else "it is text"


def load_into(features: nn.Sequential, arch: str, state: dict[str, torch.Tensor],
              source: str) -> None:
    """Copy weights into the named VGG feature stack, accepting torchvision's key layout
    (`features.0.weight`, also without the `features.` prefix) or artconv's named layout
    (`conv1_1.weight`); classifier keys are ignored."""
    index = vgg.torchvision_index(arch)
    by_name: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "features":
            parts = parts[1:]
        if len(parts) != 2 or parts[0].startswith("classifier"):
            continue
        layer, param = parts
        if layer.isdigit():
            names = [n for n, i in index.items() if i == int(layer)]
            layer = names[0] if names else f"#{layer}"
        by_name[f"{layer}.{param}"] = tensor
    expected = features.state_dict()
    missing = sorted(set(expected) - set(by_name), key=list(expected).index)
    if missing:
        raise ArtconvError(f"{source}: missing {len(missing)} {arch} key(s), first "
                           f"{_tv_key(missing[0], index)} ({missing[0]}); is it a {arch} file?")
    for key, tensor in expected.items():
        if by_name[key].shape != tensor.shape:
            raise ArtconvError(f"{source}: {_tv_key(key, index)} ({key}) has shape "
                               f"{tuple(by_name[key].shape)}, {arch} needs {tuple(tensor.shape)}")
    features.load_state_dict({k: by_name[k].float() for k in expected})


def random_init(features: nn.Sequential, seed: int) -> None:
    """torchvision VGG's own init (Kaiming normal, fan_out), seeded without touching the
    global RNG, so activations keep their scale through 16 layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                m.bias.zero_()


def _guess_preprocess(path: Path) -> str:
    for stem, kind in KNOWN_FILES.items():
        if path.name.startswith(stem):
            return kind
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
            if meta.get("preprocess") in ("caffe", "torchvision"):
                return meta["preprocess"]
        except Exception:  # an unreadable file gets its clear error from read_state_dict
            pass
    return "torchvision"


def _tv_key(key: str, index: dict[str, int]) -> str:
    layer, param = key.split(".")
    return f"features.{index[layer]}.{param}" if layer in index else key
