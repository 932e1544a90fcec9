"""Named presets: TOML recipes of options in `styles/`.

A preset file `styles/NAME.toml` holds

    description = "one line for `artconv presets`"
    engine = "style"            # or "dream", "features"
    images = ["starry.jpg"]     # optional: style/guide images, paths (relative to the
                                # file) or http(s) URLs (downloaded once into a cache)
    [options]                   # any fields of that engine's options dataclass
    pooling = "avg"

Explicit options given by the user override the preset's.
"""

from __future__ import annotations

import os
import tomllib
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artconv.errors import ArtconvError

ENGINES = ("style", "dream", "features")
_TOP_KEYS = {"description", "engine", "images", "options"}


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    engine: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()

    def image_paths(self) -> list[Path]:
        """The preset's images as local files (URLs fetched into the cache once)."""
        return [resolve_image_ref(ref, self.path.parent) for ref in self.images]


def preset_dirs() -> list[Path]:
    """Where presets are looked up, first match wins: $ARTCONV_STYLES (os.pathsep list),
    ~/.config/artconv/styles, then the bundled ones (the wheel's copy, or the repo's
    `styles/` in a source checkout)."""
    dirs = [Path(p) for p in os.environ.get("ARTCONV_STYLES", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".config" / "artconv" / "styles")
    here = Path(__file__).resolve().parent
    dirs += [here / "styles", here.parent / "styles"]
    return [d for d in dirs if d.is_dir()]


def list_presets() -> list[Preset]:
    seen: dict[str, Preset] = {}
    for d in preset_dirs():
        for path in sorted(d.glob("*.toml")):
            if path.stem not in seen:
                seen[path.stem] = read_preset(path)
    return sorted(seen.values(), key=lambda p: (p.engine, p.name))


def is_preset_name(item: object) -> bool:
    """A STYLE argument names a preset when it is a string that is no existing file, has no
    image extension and no folder part; anything else is an image."""
    from artconv.imageio import IMAGE_EXTENSIONS

    if not isinstance(item, (str, os.PathLike)):
        return False
    text = str(item)
    return (not Path(text).exists() and Path(text).suffix.lower() not in IMAGE_EXTENSIONS
            and os.sep not in text and "/" not in text)


def find_preset(name: str) -> Preset:
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ArtconvError(f"{name}: no such preset file")
        return read_preset(path)
    for d in preset_dirs():
        if (d / f"{name}.toml").is_file():
            return read_preset(d / f"{name}.toml")
    # names from the file names only: one malformed preset must not hide the others
    known = ", ".join(sorted({f.stem for d in preset_dirs() for f in d.glob("*.toml")})) \
        or "none found"
    raise ArtconvError(f"unknown preset {name!r} (known: {known}; see `artconv presets`)")


def read_preset(path: Path) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtconvError(f"{path}: cannot read preset ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ArtconvError(f"{path}: malformed TOML ({exc})") from None
    bad = sorted(set(data) - _TOP_KEYS)
    if bad:
        raise ArtconvError(f"{path}: unknown key {bad[0]!r} (allowed: "
                           f"{', '.join(sorted(_TOP_KEYS))}; options go under [options])")
    engine = data.get("engine")
    if engine not in ENGINES:
        raise ArtconvError(f"{path}: 'engine' must be one of {', '.join(ENGINES)}, "
                           f"got {engine!r}")
    options = data.get("options", {})
    images = data.get("images", [])
    if not isinstance(options, dict):
        raise ArtconvError(f"{path}: [options] must be a table")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ArtconvError(f"{path}: 'images' must be a list of paths or URLs")
    preset = Preset(path.stem, path, engine, str(data.get("description", "")),
                    dict(options), tuple(images))
    options_class(engine).from_dict(preset.options, source=str(path))  # bad keys fail now
    return preset


def options_for(cls: type, preset: str | Preset | None, overrides: dict[str, Any]) -> Any:
    """`cls` options from defaults < preset < explicit overrides (None means not given)."""
    values: dict[str, Any] = {}
    if preset is not None:
        preset = preset if isinstance(preset, Preset) else find_preset(preset)
        values.update(preset.options)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls.from_dict(values, source=str(preset.path) if preset else "options")


def resolve_image_ref(ref: str, base: Path) -> Path:
    if ref.startswith(("http://", "https://")):
        return download_image(ref)
    path = Path(ref).expanduser()
    return path if path.is_absolute() else base / path


def download_image(url: str) -> Path:
    """A URL'd image, cached under ~/.cache/artconv/images (XDG_CACHE_HOME respected)."""
    import torch

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "artconv" / "images"
    dst = cache / Path(url.split("?")[0]).name
    if dst.exists():
        return dst
    cache.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dst), progress=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ArtconvError(f"{url}: could not download ({getattr(exc, 'reason', exc)}); "
                           f"fetch it elsewhere and copy it to {dst}, or give a local path"
                           ) from None
    return dst


def options_class(engine: str) -> type:
    """The options dataclass of an engine ('style', 'dream', 'features')."""
    import importlib

    module = {"style": "artconv.style", "dream": "artconv.deepdream",
              "features": "artconv.features"}[engine]
    names = {"style": "StyleOptions", "dream": "DreamOptions", "features": "FeatureOptions"}
    return getattr(importlib.import_module(module), names[engine])
