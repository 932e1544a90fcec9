"""The one way a package offers names it does not load itself (`forward`), and the old
flat module paths that still import for one release (`MOVED`).

`import artconv.core` gives the very module object `artconv.nets.extractor` (not a copy
re-exporting its names), so scripts, pickles and `monkeypatch.setattr("artconv.core.X")`
see one module under both names, and warns (DeprecationWarning): the old paths go in the
next release. One table instead of a shim file per old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

MOVED = {
    "artconv.core": "artconv.nets.extractor",
    "artconv.vgg": "artconv.nets.vgg",
    "artconv.weights": "artconv.nets.weights",
    "artconv.pooling": "artconv.nets.pooling",
    "artconv.tiling": "artconv.nets.tiling",
    "artconv.imageio": "artconv.io.images",
    "artconv.recipe": "artconv.io.recipe",
    "artconv.sheet": "artconv.io.sheet",
    "artconv.color": "artconv.io.color",
    "artconv.style.losses": "artconv.losses.functional",
    "artconv.style.weights": "artconv.losses.weights",
    "artconv.objectives": "artconv.deepdream.objectives",
    "artconv.featurefiles": "artconv.features.files",
    "artconv.pca": "artconv.features.pca",
    "artconv.batch_ray": "artconv.batch.ray",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: object = None, target: object = None):  # noqa: ANN201
        if name in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec) -> ModuleType:  # noqa: ANN001
        _deprecated(f"{spec.name} is deprecated and goes in the next release: "
                    f"import {MOVED[spec.name]}")
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # the real module ran when it was imported under its own name


def _deprecated(message: str) -> None:
    """A DeprecationWarning at the line that imported the old path: an import reaches here
    through the import machinery (and maybe `forward`), whose frames no stacklevel fits."""
    frame = sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename == __file__
                                        or "importlib" in frame.f_code.co_filename):
        frame = frame.f_back
    warnings.warn_explicit(message, DeprecationWarning, frame.f_code.co_filename,
                           frame.f_lineno, module=frame.f_globals.get("__name__"),
                           registry=frame.f_globals.setdefault("__warningregistry__", {}))


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())


def forward(package: str, *modules: str, names: Mapping[str, str] | None = None
            ) -> Callable[[str], Any]:
    """A package's `__getattr__` (PEP 562): a name the package itself lacks is taken from
    the module `names` gives for it, else looked up in `modules`, in order, each imported on
    first use. Packages load only their torch-free option record eagerly, so `--help` never
    pays for torch, yet `from artconv.style import StyleTransfer` works as it always did."""
    names = dict(names or {})

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        if not name.startswith("__"):
            # `from pkg import submodule` asks here before importing it: a submodule is
            # itself, never looked up in `modules` (that import could loop back to it).
            if importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            for module in modules:
                found = importlib.import_module(module)
                if hasattr(found, name):
                    return getattr(found, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def moved_names(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module's `__getattr__` for public names that moved to another module (`names`:
    name -> its new module): each still works for one release, with a DeprecationWarning
    naming the new place."""

    def __getattr__(name: str) -> Any:
        if name in names:
            _deprecated(f"{module}.{name} is deprecated and goes in the next release: "
                        f"use {names[name]}.{name}")
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__

