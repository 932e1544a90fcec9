"""Clips: temporally consistent style transfer and Deep Dream on video (issue 12).

`options` (VideoOptions, no torch), `io` (PyAV in and out), `flow` (optical flow, the
forward-backward check, warping), `temporal` (Ruder's temporal loss as a style prior),
`clip` (the driver: frames -> engine -> frames, resumable), `feedforward` (its frame loop
for a trained network: one pass a frame, batched, --flow-blend), `stats` (warping error).

This package imports nothing heavy itself, so the CLI can read `VideoOptions` without torch;
the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "VideoOptions": "options", "run_clip": "clip", "temporal_frames": "clip",
    "TemporalLoop": "clip", "read_frames": "io", "encode": "io", "probe": "io",
    "warping_error": "stats", "FeedForwardLoop": "feedforward",
    "feedforward_frames": "feedforward",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"artconv.video.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
