"""Where a clip's time went: one record for both frame loops (`clip.TemporalLoop`, the
optimising engines; `feedforward.FeedForwardLoop`, the trained networks) and the segments
that sum them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FrameTimes:
    """Where a clip's time went (seconds, summed over frames)."""

    engine: float = 0.0
    flow_wait: float = 0.0  # waiting for the flow thread (the rest of the flow overlapped)
    flow: float = 0.0  # spent in the flow thread
    frames: int = 0
    scenes: int = 0


__all__ = ["FrameTimes"]
