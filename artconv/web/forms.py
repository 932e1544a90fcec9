"""What a page may send, and the form it is built from: the engines' option records as form
fields, a page's option overrides checked, ids, and the presets a page may pick.

Nothing a browser sends names a file or code on the server: inputs are ids made here or
preset names, options that name files are refused, and the network (weights, architecture)
is the server's alone (`artconv serve --weights/--arch`), so a page never starts a download.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.errors import ArtconvError
from artconv.fast.options import PUBLISHED_MODELS
from artconv.fast.train_options import TrainOptions
from artconv.io.files import url_cache_path, url_of
from artconv.options import CoreOptions, field_name, option_fields
from artconv.presets import Preset, find_preset, is_preset_name, list_presets

TRAIN = "train"  # the job kind that runs `artconv train` (artconv.web.training), no engine
SWEEP_VALUES = (3, 8)  # fewest and most values of a sweep
# The options shown first on the page; the rest of each record goes under "More options".
MAIN_FIELDS = {
    "style": ("size", "iterations", "style_weight", "content_weight", "blend", "style_scale",
              "preserve_colors", "pooling", "precision", "seed"),
    "dream": ("size", "layers", "octaves", "steps", "step_size", "preserve_colors",
              "pooling", "precision", "seed"),
    "features": ("size", "layers", "pooling", "precision", "seed"),
    "fast": ("model", "size", "preserve_colors", "tile", "precision"),
    TRAIN: ("steps", "crop", "batch_size", "width", "blocks", "style_weight",
            "content_weight", "preview_every", "checkpoint_every", "seed"),
}
# What the sweep view offers first (any other field of the record may be swept too).
SWEEP_FIELDS = ("style_weight", "style_scale", "style_layers", "layers", "pooling",
                "content_weight", "octaves", "step_size")
# Values that name files or code on the server (weights files, backbones, masks, guides) or
# make outputs the studio does not show (zoom videos, arrays) never come from the browser;
# the operator may still set them as studio defaults.
BLOCKED = frozenset({"backbone", "masks", "style_masks", "masks_rest", "guide", "mask",
                     "objective", "frames", "gif", "zoom", "rotate", "similar_to",
                     "pca_shared", "memmap", "device"})
# Options that take a file path as one of their forms: only the named forms from a browser.
NAMED_ONLY = {"init": ("content", "noise"), "model": PUBLISHED_MODELS}
# The server's network (`artconv serve --weights/--arch`): a page must not switch it, or it
# could start downloads of other weights. Not in the form; a preset setting them is refused.
SERVER_FIELDS = ("weights", "arch")
_ID = re.compile(r"[0-9a-f]{16}")


def new_id() -> str:
    return secrets.token_hex(8)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: Any, what: str) -> str:
    if not is_id(value):
        raise ArtconvError(f"{what} {value!r}: not an id of this studio")
    return value


# -- the option records, as form fields --------------------------------------------------------
def options_class(kind: str) -> type[CoreOptions]:
    """The option record of a page's job kind: an engine's, or training's."""
    return TrainOptions if kind == TRAIN else registry.options_class(kind)


def form_fields(engine: str, defaults: CoreOptions) -> list[dict[str, Any]]:
    """The fields of `engine`'s option record the page may set, with their help, range,
    choices and the studio's default: the page builds its form from these."""
    values = defaults.to_dict()
    main = MAIN_FIELDS.get(engine, ())
    out = []
    for f in option_fields(options_class(engine)):
        if f.name in BLOCKED or f.name in SERVER_FIELDS:
            continue
        kind, choices = f.kind, f.choices
        if f.name in NAMED_ONLY:  # a text field whose page form is a choice of names
            kind, choices = "choice", tuple(dict.fromkeys((*NAMED_ONLY[f.name],
                                                           values[f.name])))
        out.append({"name": f.name, "label": f.label, "kind": kind,
                    "choices": [c for c in choices if c is not None],
                    "default": values[f.name], "help": f.help, "min": f.min, "max": f.max,
                    "optional": f.optional, "main": f.name in main})
    order = {name: i for i, name in enumerate(main)}
    return sorted(out, key=lambda d: (not d["main"], order.get(d["name"], 0)))


def browser_options(engine: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The option overrides a page sent, checked: known fields only, none that names a
    file or code on this machine or the server's network; empty values mean "not given"."""
    known = {f.name for f in option_fields(options_class(engine))}
    out = {}
    for key, value in (given or {}).items():
        name = field_name(key)
        if name not in known:
            raise ArtconvError(f"option {key!r}: not an option of {engine}")
        if name in BLOCKED:
            raise ArtconvError(f"option {name!r}: cannot be set from the page (it names "
                               "files on the server or makes outputs the studio does not "
                               "show)")
        if name in SERVER_FIELDS:
            raise ArtconvError(f"option {name!r}: only the server chooses the network "
                               f"(artconv serve --{name})")
        if value is None or value == "" or value == []:
            continue
        if name in NAMED_ONLY and value not in NAMED_ONLY[name]:
            raise ArtconvError(f"option {name!r} {value!r}: from the page choose one of "
                               f"{', '.join(NAMED_ONLY[name])}")
        out[name] = value
    return out


def check_network(merged: CoreOptions, server: CoreOptions, presets: Sequence[str]) -> None:
    """Refuse options whose network is not the server's: only a preset can have changed
    it (the page's own options are checked by `browser_options`)."""
    for name in SERVER_FIELDS:
        value = getattr(merged, name)
        if value != getattr(server, name):
            which = next((p for p in presets if name in find_preset(p).options), "?")
            raise ArtconvError(f"preset {which!r}: sets {name} {value!r}, but only the "
                               f"server chooses the network (artconv serve --{name})")


def sweep_values(option: str, values: Sequence[Any]) -> list[Any]:
    """The values of a sweep, empty ones dropped: 3 to 8 of them."""
    values = [v for v in values if v not in (None, "")]
    lo, hi = SWEEP_VALUES
    if not lo <= len(values) <= hi:
        raise ArtconvError(f"sweep: give {lo} to {hi} values of {option} (got {len(values)})")
    return values


def job_label(engine: str, named: Sequence[str], overrides: Mapping[str, Any]) -> str:
    parts = [engine, *named]
    parts += [f"{k}={v}" for k, v in list(overrides.items())[:3]]
    return " ".join(parts)


# -- presets -----------------------------------------------------------------------------------
def preset_images_ready(preset: Preset) -> bool:
    """Whether every image of a preset is on this machine (a local file, or a URL already in
    the download cache): the studio never downloads while a page waits."""
    for ref in preset.images:
        if url_of(ref) == ref:
            if not url_cache_path(ref).is_file():
                return False
        elif not (preset.path.parent / Path(ref).expanduser()).is_file():
            return False
    return True


def preset_list() -> list[dict[str, Any]]:
    out = []
    for p in list_presets():
        out.append({"name": p.name, "engine": p.engine, "description": p.description,
                    "licence": p.licence, "source": p.source, "style": bool(p.images),
                    "available": bool(p.images) and preset_images_ready(p)})
    return out


def page_preset(name: str, engine: str, *, style: bool = False) -> Preset:
    """A preset a page named: a listed one of `engine`; as a style, one whose images are
    on this machine."""
    if not is_preset_name(name) or name not in {p.name for p in list_presets()}:
        raise ArtconvError(f"preset {name!r}: no such preset (see `artconv presets`)")
    preset = find_preset(name)
    if preset.engine != engine:
        raise ArtconvError(f"preset {name!r}: is for {preset.engine}, not {engine}")
    if style and not preset.images:
        raise ArtconvError(f"preset {name!r}: has no style images (choose it as the "
                           "preset instead)")
    if style and not preset_images_ready(preset):
        raise ArtconvError(f"preset {name!r}: its images are not on this machine (run "
                           "`artconv presets --fetch` once while online)")
    return preset
