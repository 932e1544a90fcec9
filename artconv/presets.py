"""Named presets: TOML recipes of options in `styles/`.

A preset file `styles/NAME.toml` holds

    description = "one line for `artconv presets`"
    engine = "style"            # or "dream", "features"
    images = ["starry.jpg"]     # optional: style/guide images, paths (relative to the
                                # file) or http(s) URLs (downloaded once into a cache)
    licence = "public domain"   # optional: the images' licence, and where they come from
    source = "https://commons.wikimedia.org/wiki/File:..."
    [options]                   # any fields of that engine's options dataclass
    pooling = "avg"

Explicit options given by the user override the preset's.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.errors import ArtconvError
from artconv.io.files import (
    IMAGE_EXTENSIONS,
    check_regular_file,
    download,
    input_stem,
    url_cache_path,
    url_of,
)
from artconv.options import CoreOptions

ENGINES = tuple(registry.ENGINES)  # at import; checks below read the registry itself
_TOP_KEYS = {"description", "engine", "images", "licence", "options", "source"}


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    engine: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    licence: str = ""
    source: str = ""

    def urls(self) -> list[str]:
        """The preset's images given by http(s) URL."""
        return [ref for ref in self.images if url_of(ref) == ref]

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
    if not isinstance(item, (str, os.PathLike)):
        return False
    text = str(item)
    return (not Path(text).exists() and Path(text).suffix.lower() not in IMAGE_EXTENSIONS
            and os.sep not in text and "/" not in text)


def find_preset(name: str) -> Preset:
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.exists():
            raise ArtconvError(f"{name}: no such preset file")
        return read_preset(path)
    for d in preset_dirs():
        if (d / f"{name}.toml").exists():
            return read_preset(d / f"{name}.toml")
    # names from the file names only: one malformed preset must not hide the others
    known = ", ".join(sorted({f.stem for d in preset_dirs() for f in d.glob("*.toml")})) \
        or "none found"
    raise ArtconvError(f"unknown preset {name!r} (known: {known}; see `artconv presets`)")


def read_preset(path: Path) -> Preset:
    if path.is_dir():
        raise ArtconvError(f"{path}: is a folder, not a preset file")
    check_regular_file(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtconvError(f"{path}: cannot read preset ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ArtconvError(f"{path}: malformed TOML ({exc})") from None
    bad = sorted(set(data) - _TOP_KEYS)
    if bad:
        raise ArtconvError(f"{path}: unknown key {bad[0]!r}{_at(text, None, bad[0])} "
                           f"(allowed: {', '.join(sorted(_TOP_KEYS))}; options go under "
                           "[options])")
    engine = data.get("engine")
    if engine not in registry.ENGINES:
        raise ArtconvError(f"{path}: 'engine'{_at(text, None, 'engine')} must be one of "
                           f"{', '.join(registry.ENGINES)}, got {engine!r}")
    options = data.get("options", {})
    images = data.get("images", [])
    if not isinstance(options, dict):
        raise ArtconvError(f"{path}: [options]{_at(text, None, 'options')} must be a table")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ArtconvError(f"{path}: 'images'{_at(text, None, 'images')} must be a list of "
                           "paths or URLs")
    for key in ("description", "licence", "source"):
        if not isinstance(data.get(key, ""), str):
            raise ArtconvError(f"{path}: '{key}'{_at(text, None, key)} must be a string")
    preset = Preset(path.stem, path, engine, data.get("description", ""),
                    dict(options), tuple(images), data.get("licence", ""),
                    data.get("source", ""))
    cls = registry.options_class(engine)
    try:
        cls.from_dict(preset.options, source=str(path))  # bad keys and values fail now
    except ArtconvError as exc:
        raise ArtconvError(_locate(path, text, cls, preset.options, str(exc))) from None
    return preset


def _locate(path: Path, text: str, cls: type, options: dict[str, Any], message: str) -> str:
    """`message` about a preset's options, saying which key (and line) it is about: the key
    alone fails with the same message. Cross-field complaints name the file only."""
    culprit = None
    for key, value in options.items():
        try:
            cls.from_dict({key: value}, source=str(path))
        except ArtconvError as exc:
            if str(exc) == message:
                culprit = key
                break
    if culprit is None:
        return message if message.startswith(f"{path}:") else f"{path}: {message}"
    where = _at(text, "options", culprit)
    if message.startswith(f"{path}:") and repr(culprit) in message:  # e.g. unknown option
        return message.replace(repr(culprit), repr(culprit) + where, 1)
    return f"{path}: [options] {culprit}{where}: {message}"


def _at(text: str, table: str | None, key: str) -> str:
    """' (line N)' where `key` is set in `[table]` (None: the top level), or '' when the
    TOML spells it in a way this simple scan doesn't follow (dotted keys, inline tables)."""
    current = None
    pattern = re.compile(r"\s*(?:" + re.escape(key) + r"|\"" + re.escape(key) + r"\"|'"
                         + re.escape(key) + r"')\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$", line)
        if header:
            current = header.group(1).strip("\"'")
        elif current == table and pattern.match(line):
            return f" (line {number})"
    return ""


def options_for(engine: str | type[CoreOptions], preset: str | Preset | None = None,
                overrides: Mapping[str, Any] | None = None, *,
                named: Sequence[str | Preset] = (), base: CoreOptions | None = None) -> Any:
    """The one merge of an engine's options, used by the CLI, the API and batches:
    defaults (or `base`, options already merged) < the options of presets `named` as inputs
    (style presets given as STYLE) < `preset` (--preset) < explicit `overrides` (None
    values count as not given). `engine` is an engine name or its option record; a preset
    of another engine is refused, naming its file."""
    cls = registry.options_class(engine) if isinstance(engine, str) else engine
    name = engine if isinstance(engine, str) else _engine_of(cls)
    values: dict[str, Any] = {}
    where: list[str] = []
    for item in [*named, *([preset] if preset is not None else [])]:
        found = item if isinstance(item, Preset) else find_preset(item)
        if name is not None and found.engine != name:
            raise ArtconvError(f"{found.path}: preset {found.name!r} is for {found.engine}, "
                               f"not {name}")
        values.update(found.options)
        where.append(str(found.path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if base is not None:
        return base.replace(**values)
    return cls.from_dict(values, source=" + ".join(where) or "options")


@dataclass(frozen=True)
class Sources:
    """What a list of image arguments (STYLE ...) stands for: each is an image (a path,
    PIL image, array or tensor) or the name of a preset of the engine, which brings its
    images and its options."""

    images: list[Any]
    names: list[str]  # one per argument, for output file names
    presets: tuple[Preset, ...] = ()

    @property
    def preset_options(self) -> dict[str, Any]:
        return {k: v for p in self.presets for k, v in p.options.items()}

    @property
    def preset_paths(self) -> list[str]:
        return [str(p.path) for p in self.presets]


def resolve_sources(items: Any, engine: str = "style") -> Sources:
    """The images behind image arguments of `engine` (a preset name stands for its images
    and options; see `is_preset_name`)."""
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    if not items:
        raise ArtconvError(f"no {engine} image given")
    images: list[Any] = []
    names: list[str] = []
    presets: list[Preset] = []
    for item in items:
        if not is_preset_name(item):
            images.append(item)
            names.append(input_stem(item) if isinstance(item, (str, os.PathLike)) else engine)
            continue
        preset = find_preset(str(item))
        if preset.engine != engine:
            raise ArtconvError(f"{preset.path}: preset {preset.name!r} is for "
                               f"{preset.engine}, not {engine}")
        found = preset.image_paths()
        if not found:
            raise ArtconvError(f"{preset.path}: preset {preset.name!r} has no {engine} "
                               f"images; use it as --preset {preset.name} with a {engine} "
                               "image")
        images += found
        names.append(preset.name)
        presets.append(preset)
    return Sources(images, names, tuple(presets))


def _engine_of(cls: type) -> str | None:
    return next((spec.name for spec in registry.ENGINES.values() if spec.options is cls), None)


def resolve_image_ref(ref: str, base: Path) -> Path:
    if url_of(ref) == ref:
        return download_image(ref)
    path = Path(ref).expanduser()
    return path if path.is_absolute() else base / path


def download_image(url: str, *, quiet: bool = False) -> Path:
    """A URL'd image, cached under ~/.cache/artconv/images (XDG_CACHE_HOME respected), with
    a progress bar on stderr while it downloads (see `artconv.io.files.download` for the
    cache's names, the size limit, the timeout and the messages)."""
    dst = url_cache_path(url)
    if dst.is_file():
        return dst
    from artconv.progress import Progress

    with Progress(quiet=quiet) as progress:
        return download(url, report=lambda label, total: progress.task(label, total).update)


def options_class(engine: str) -> type[CoreOptions]:
    """The option record of an engine ('style', 'dream', 'features'): see `artconv.registry`."""
    return registry.options_class(engine)
