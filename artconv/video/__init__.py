"""Clips: temporally consistent style transfer and Deep Dream on video (issue 12).

`options` (VideoOptions, no torch), `io` (PyAV in and out), `flow` (optical flow, the
forward-backward check, warping), `temporal` (Ruder's temporal loss as a style prior),
`clip` (the driver: frames -> engine -> frames, resumable), `feedforward` (its frame loop
for a trained network: one pass a frame, batched, --flow-blend), `stats` (warping error).

This package imports nothing heavy itself, so the CLI can read `VideoOptions` without torch;
the names below load their module on first use.
"""

from __future__ import annotations

from artconv._moved import forward

_NAMES = {
    "VideoOptions": "options", "run_clip": "clip", "temporal_frames": "clip",
    "TemporalLoop": "clip", "read_frames": "io", "encode": "io", "probe": "io",
    "warping_error": "stats", "FeedForwardLoop": "feedforward",
    "feedforward_frames": "feedforward",
}

__getattr__ = forward(__name__, names={name: f"{__name__}.{module}"
                                       for name, module in _NAMES.items()})

__all__ = sorted(_NAMES)
