"""The clip driver's option record: one place for the CLI flags of `artconv style CLIP` and
`artconv dream CLIP`, manifest "video" tables and the clip's recipe. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from artconv.errors import ArtconvError
from artconv.options import Options, flag, opt

# Ruder et al. (artistic-videos): content 5, temporal 1e3, both on 0..255 caffe pixels.
RUDER_TEMPORAL_PER_CONTENT = 200.0
# A million hours: far beyond any clip, and small enough that a seek target in the finest
# time base a container uses (1 ns) still fits the 64 bits FFmpeg takes.
MAX_SECONDS = 3.6e9
# The slowest frames-folder rate the driver can keep as a fraction with denominator <= 1001
# (smaller ones round to 0 frames a second).
MIN_FPS = 0.001


# Clip options that mean something to some engines only (the rest apply to every clip):
# given to another engine's clip they are refused rather than silently ignored.
ENGINE_ONLY = {"temporal_weight": ("style",), "temporal_frames": ("style",),
               "frame_iterations": ("style",), "frame_blend": ("dream",),
               "flow_blend": ("fast",), "batch": ("fast",)}
ENGINE_NAMES = {"style": "style", "dream": "dream", "fast": "--model"}


@dataclass
class VideoOptions(Options):
    """How a clip is read, kept steady from frame to frame, and written."""

    temporal_weight: float = opt(
        RUDER_TEMPORAL_PER_CONTENT,
        "Style: weight of the temporal loss (each frame pulled toward the previous output "
        "warped by the optical flow, on pixels that stay visible), relative to the content "
        "weight as in Ruder et al. (their 1e3 next to content 5); 0 = independent frames "
        "that still start from the warped previous output.", min=0)
    temporal_frames: tuple[int, ...] = opt(
        (1,), "Style: previous frames the temporal loss looks back to, e.g. 1,2,4 (Ruder's "
        "long-term loss: each pixel is pulled toward the nearest of them where it is "
        "visible).", min=1, max=64)
    frame_iterations: int | None = opt(
        None, "Style: steps for every frame after the first of a scene, run at the output "
        "size only (default: half the last scale's --iterations); the first frame of a "
        "scene runs the whole ladder.", min=1)
    frame_blend: float = opt(
        0.5, "Dream: each frame starts from this much of the previous dream warped by the "
        "flow, the rest the new frame (0 = independent frames; 1 = the dream keeps growing).",
        min=0, max=1)
    flow_blend: float = opt(
        0.0, "Trained network (--model): mix this much of the previous output, warped by "
        "the optical flow, into each new output where the forward-backward check finds the "
        "pixel in both frames (0 = off: no flow is computed; 1 = those pixels keep the "
        "previous output).", min=0, max=1)
    batch: int = opt(
        4, "Trained network (--model): frames per forward pass (lower it to cap memory at "
        "large sizes).", min=1, max=1024)
    flow: Literal["dis", "raft"] = opt(
        "dis", "Optical flow: dis (OpenCV's DIS, CPU, real time at 480p) or raft "
        "(torchvision's RAFT; weights downloaded once; wants a GPU).")
    flow_preset: Literal["ultrafast", "fast", "medium"] = opt(
        "medium", "DIS quality preset.")
    scene_cut: float = opt(
        0.6, "A frame where more than this fraction of the pixels cannot be found in the "
        "previous frame starts a new scene (no warped start, no temporal loss).",
        min=0, max=1)
    start: float = opt(0.0, "Start this many seconds into the clip.", min=0,
                       max=MAX_SECONDS)
    duration: float | None = opt(None, "Work on this many seconds only (default: to the "
                                 "end).", gt=0, max=MAX_SECONDS)
    every: int = opt(1, "Take every N-th frame (the output's rate is divided by N, so it "
                     "lasts as long).", min=1)
    fps: float | None = opt(None, "Frame rate of a frames folder or glob given as input "
                            "(default 25; a clip keeps its own).", min=MIN_FPS, max=1000)
    crf: int = opt(18, "H.264 quality of the output clip: 0 = lossless ... 51 = worst "
                   "(18 looks lossless).", min=0, max=51)
    segment_frames: int | None = opt(
        None, "Split the clip into segments of this many frames, stylised independently "
        "(in parallel on Ray: one task each) and cross-faded over --segment-overlap frames "
        "where they meet (default: one segment).", min=2)
    segment_overlap: int = opt(
        4, "Frames two neighbouring segments share; each is a linear cross-fade from the "
        "earlier segment's output to the later's (at most half of --segment-frames).", min=1)

    def check(self) -> None:
        super().check()
        if not self.temporal_frames:
            raise ArtconvError("--temporal-frames: give at least one frame distance")
        if list(self.temporal_frames) != sorted(set(self.temporal_frames)):
            raise ArtconvError(f"--temporal-frames {','.join(map(str, self.temporal_frames))}"
                               ": must increase (e.g. 1,2,4)")
        if self.segment_frames and 2 * self.segment_overlap > self.segment_frames:
            raise ArtconvError(f"--segment-overlap {self.segment_overlap}: at most half of "
                               f"--segment-frames {self.segment_frames}")

    @staticmethod
    def check_engine(engine: str, given: dict[str, object], what: str) -> None:
        """Refuse a clip option `given` (by name) that `engine` does not use; `what` names
        the engine for the user (e.g. "--model")."""
        for name in given:
            if engine not in ENGINE_ONLY.get(name, (engine,)):
                raise ArtconvError(f"{flag(name)}: does not apply to {what} (only to "
                                   f"{' and '.join(ENGINE_NAMES[e] for e in ENGINE_ONLY[name])}"
                                   " clips)")

    @property
    def lookback(self) -> int:
        """How many previous frames (inputs and outputs) the driver keeps."""
        return max(self.temporal_frames)
