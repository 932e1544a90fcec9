"""Import paths of modules that moved into packages keep working.

`import artconv.core` gives the very module object `artconv.nets.extractor` (not a copy
re-exporting its names), so scripts, pickles and `monkeypatch.setattr("artconv.core.X")`
see one module under both names. One table instead of a shim file per old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

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
    "artconv.losses": "artconv.style.losses",
    "artconv.deepdream": "artconv.dream.engine",
    "artconv.objectives": "artconv.dream.objectives",
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
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # the real module ran when it was imported under its own name


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
