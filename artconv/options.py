"""Typed option records shared by the API, the CLI, presets and batch jobs.

Each engine declares ONE dataclass (inheriting `CoreOptions`); every field carries its help
text and range in `field(metadata=...)` via `opt()`. The CLI builds its flags from these
fields, presets and manifests are checked against them, and recipes are `asdict()` of them,
so an option is added in exactly one place.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from artconv.errors import ArtconvError

T = TypeVar("T", bound="Options")

# torch.Generator.manual_seed takes any 64-bit value; one bit of headroom lets engines derive
# further seeds (seed + k) without overflowing.
MAX_SEED = 2**63 - 1
# Whole numbers beyond int64 overflow the moment torch sees them, whatever the option.
INT64 = (-(2**63), 2**63 - 1)
# A memory budget in GiB (--max-memory): 1 PiB, beyond any machine; bytes of a larger one
# overflow the whole numbers tiles are planned in.
MAX_MEMORY_GIB = 2.0**20


def opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
        short: str | None = None, cli: bool = True, gt: float | None = None) -> Any:
    """A dataclass field with its help text and allowed range.

    `min`/`max` are inclusive, `gt` exclusive; `cli=False` keeps a field out of the CLI
    (API-only values such as callables). Every number must also be finite (no nan or inf)
    and every whole number fit in 64 bits, range or not.
    """
    meta = {"help": help, "min": min, "max": max, "gt": gt, "short": short, "cli": cli}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults so options stay hashable")
    return field(default=default, metadata=meta)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_name(key: Any) -> str:
    """The field an option key names: presets, manifests and pages may write "avg-rescale"
    as on the command line (the inverse of `flag`, without the dashes)."""
    return str(key).replace("-", "_")


def field_names(data: Mapping[Any, Any]) -> dict[str, Any]:
    """`data` with every key as its field name."""
    return {field_name(k): v for k, v in data.items()}


@dataclass(frozen=True)
class OptionField:
    """One settable field of an option record, as an interface shows it: the CLI's flags,
    and a form (the studio) can build its inputs from the same walk."""

    name: str
    type: Any  # the declared type without Optional
    optional: bool  # None is a value (e.g. "no backbone")
    kind: str  # "choice", "bool", "int", "float", "list" (a tuple: comma-separated) or "text"
    choices: tuple  # the Literal's values, else ()
    default: Any
    help: str
    min: float | None
    max: float | None
    short: str | None
    core: bool  # a CoreOptions field (network, weights, device), shared by every engine

    @property
    def flag(self) -> str:
        return flag(self.name)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def option_fields(cls: type) -> list[OptionField]:
    """The fields of an option record an interface may set (not `cli=False` ones), in
    declaration order."""
    hints = typing.get_type_hints(cls)
    core = {f.name for f in fields(CoreOptions)}
    out = []
    for f in fields(cls):
        if not f.metadata.get("cli", True):
            continue
        tp, optional = base_type(hints[f.name])
        choices = literal_choices(tp) or ()
        if choices:
            kind = "choice"
        elif typing.get_origin(tp) is tuple:
            kind = "list"
        else:
            kind = {bool: "bool", int: "int", float: "float"}.get(tp, "text")
        out.append(OptionField(f.name, tp, optional, kind, tuple(choices), f.default,
                               f.metadata.get("help", ""), f.metadata.get("min"),
                               f.metadata.get("max"), f.metadata.get("short"), f.name in core))
    return out


class Options:
    """Base of every option record: construction from mappings, checking, serialising."""

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "options") -> T:
        """Build from a mapping (preset, manifest line, JSON), coercing and checking each
        value; unknown keys are an error naming `source`."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in data if field_name(k) not in known]
        if unknown:
            raise ArtconvError(f"{source}: unknown option {unknown[0]!r} for "
                               f"{cls.__name__} (valid: {', '.join(sorted(known))})")
        return cls(**{k: coerce(cls, k, v) for k, v in field_names(data).items()}).validated()

    def replace(self: T, **changes: Any) -> T:
        """A checked copy with `changes`; None for a field that cannot be None means "not
        given" (keeps the current value), so callers can pass optional arguments through."""
        cls = type(self)
        hints = typing.get_type_hints(cls)
        coerced = {k: coerce(cls, k, v) for k, v in changes.items()
                   if v is not None or k not in hints or base_type(hints[k])[1]}
        return dataclasses.replace(self, **coerced).validated()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if f.metadata.get("cli", True)}

    # -- checking ------------------------------------------------------------------
    def validated(self: T) -> T:
        """Check every field against its type's choices and its declared range."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            choices = literal_choices(hints[f.name])
            if choices and value not in choices:
                raise ArtconvError(f"{flag(f.name)} {value!r}: choose one of "
                                   f"{', '.join(map(str, choices))}")
            for v in value if isinstance(value, tuple) else (value,):
                _check_range(f, v)
        self.check()
        return self

    def check(self) -> None:
        """Cross-field checks; engines override (and call super)."""


@dataclass
class CoreOptions(Options):
    """Options every engine shares: which network, which weights, where it runs."""

    arch: Literal["vgg16", "vgg19"] = opt("vgg19", "VGG architecture.")
    weights: str = opt(
        "imagenet",
        "Weights: 'imagenet' (torchvision), 'caffe' (neural-style's converted VGG), a "
        ".pth/.pt/.safetensors file, or 'random' (noise, for tests).")
    preprocess: Literal["auto", "torchvision", "caffe"] = opt(
        "auto", "Input normalisation a weights FILE expects; 'auto' knows the standard "
        "file names and otherwise assumes torchvision.")
    pooling: Literal["max", "avg", "strided", "none"] = opt(
        "max", "Pooling switch: max (as trained), avg, strided (pool -> stride-2 conv) or "
        "none (a-trous, full resolution, ~50x compute).")
    avg_rescale: bool = opt(
        False, "With --pooling avg, scale each avg pool so its output RMS matches max "
        "pooling's (factors calibrated once on 1/f noise).")
    seamless: bool = opt(
        False, "Seamless texture: every convolution and pool pads circularly (the image is "
        "seen as wrapping around), so the result tiles without a seam.")
    backbone: str | None = opt(
        None, "Own network instead of VGG: FILE.py:FUNCTION returning an nn.Sequential "
        "(RGB [0,1] input) or an artconv.Backbone.")
    device: str = opt("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    precision: Literal["auto", "fp32", "bf16"] = opt(
        "auto", "Compute precision: bf16 autocast (losses in fp32) or fp32; auto picks "
        "bf16 where the device runs it fast.")
    seed: int = opt(0, "Random seed (noise init, jitter, random weights).", min=0,
                    max=MAX_SEED)
    compile: bool = opt(
        False, "torch.compile the network (opt-in: minutes of compiling per image size and "
        "needs a C++ compiler; measured gain in benchmarks/README.md).")

    def check(self) -> None:
        super().check()
        if self.avg_rescale and self.pooling != "avg":
            raise ArtconvError(f"--avg-rescale: only applies to --pooling avg (pooling is "
                               f"{self.pooling})")


def _check_range(f: dataclasses.Field, v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return
    lo, hi, gt = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("gt")
    # nan passes every comparison below, and inf options only fail after the work, as a
    # loss that "became nan"; so they are refused here, for every engine and source.
    if isinstance(v, float) and not math.isfinite(v):
        raise ArtconvError(f"{flag(f.name)} {v}: must be a finite number")
    if isinstance(v, int):
        lo = INT64[0] if lo is None else lo
        hi = INT64[1] if hi is None else hi
    if lo is not None and v < lo:
        raise ArtconvError(f"{flag(f.name)} {v}: must be at least {lo}")
    if hi is not None and v > hi:
        raise ArtconvError(f"{flag(f.name)} {v}: must be at most {hi}")
    if gt is not None and not v > gt:
        raise ArtconvError(f"{flag(f.name)} {v}: must be greater than {gt}")


def literal_choices(tp: Any) -> tuple | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return None


def base_type(tp: Any) -> tuple[Any, bool]:
    """(type without Optional, is_optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return tp, True
    return tp, False


def coerce(cls: type, name: str, value: Any) -> Any:
    """Turn CLI strings, TOML/JSON lists and numbers into the field's declared type."""
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ArtconvError(f"unknown option {flag(name)}")
    tp, optional = base_type(hints[name])
    if value is None:
        return None if optional else value
    try:
        return _coerce(tp, value)
    except (TypeError, ValueError) as exc:
        raise ArtconvError(f"{flag(name)} {value!r}: {exc}") from None


def _coerce(tp: Any, value: Any) -> Any:
    if typing.get_origin(tp) is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(item, v) for v in value)
    if typing.get_origin(tp) is Literal:
        return value
    if tp is bool:
        if isinstance(value, str):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        return bool(value)
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("expected a whole number")
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ValueError("expected a whole number") from None
        return int(value)
    if tp is float:
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    if tp is str:
        return str(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
