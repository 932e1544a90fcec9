"""The recipe an output carries: everything needed to make it again."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import artconv


def make_recipe(engine: str, options: Any, *, weights: str, inputs: Sequence[Any] = (),
                device: str | torch.device | None = None, precision: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """A JSON-ready record: engine, full options (with their seed), weights identity,
    inputs, the device and precision actually used, and artconv/torch versions."""
    return {
        "artconv": artconv.__version__,
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
        return str(value)
    return f"<{type(value).__name__}>"
