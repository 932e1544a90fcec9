"""Synthetic clips with known motion, made with PyAV in the tests (nothing downloaded)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from artconv.deepdream.options import DreamOptions


def still(h: int = 240, w: int = 320, seed: int = 0) -> Image.Image:
    """A smooth, textured picture: upsampled noise (DIS needs texture to follow)."""
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


def affine(t: int, pan: float, zoom: float, hw: tuple[int, int]) -> np.ndarray:
    """Frame t's map from frame pixels to still pixels (3x3): a pan of `pan` px per frame
    and a zoom by `zoom` per frame about the frame's centre."""
    h, w = hw
    s = 1 / zoom ** t
    cx, cy = 60 + w / 2 + pan * t, 60 + h / 2
    return np.array([[s, 0, cx - s * w / 2], [0, s, cy - s * h / 2], [0, 0, 1]])


def frames(n: int = 6, hw: tuple[int, int] = (48, 64), pan: float = 3.0,
           zoom: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """n frames (H, W, 3) uint8 of a still seen through a panning, zooming camera."""
    picture = still(seed=seed)
    out = []
    for t in range(n):
        a = affine(t, pan, zoom, hw)
        im = picture.transform((hw[1], hw[0]), Image.AFFINE, tuple(a[:2].ravel()),
                               resample=Image.BICUBIC)
        out.append(np.array(im))
    return out


def true_backward(t: int, pan: float, zoom: float, hw: tuple[int, int]) -> np.ndarray:
    """The exact flow from frame t+1 to frame t, (H, W, 2)."""
    h, w = hw
    m = np.linalg.inv(affine(t, pan, zoom, hw)) @ affine(t + 1, pan, zoom, hw)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    y = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return np.stack([x - xs, y - ys], -1)


def write_clip(path: Path, images: list[np.ndarray], fps: int = 12, *, audio: bool = True,
               rotation: int = 0) -> Path:
    """An H.264 clip of `images` (and a 440 Hz AAC tone as long as the clip)."""
    import av

    h, w = images[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "10"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=8000) if audio else None
        for arr in images:
            for packet in video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            sr = 8000
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(sr * len(images) // fps) / sr)
                    ).astype(np.float32)
            for i in range(0, tone.size, 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, i:i + 1024].copy(),
                                                   format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = sr, i, Fraction(1, sr)
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as clip:
        return [bytes(p) for p in clip.demux(clip.streams.audio[0]) if p.size]


def stream_facts(path: Path) -> dict:
    """Frames decoded, rate, stored size and rotation of a clip's video stream."""
    import av

    with av.open(str(path)) as clip:
        stream = clip.streams.video[0]
        decoded = list(clip.decode(stream))
        return {"frames": len(decoded), "rate": Fraction(stream.average_rate),
                "size": (stream.codec_context.width, stream.codec_context.height),
                "rotation": int(decoded[0].rotation or 0), "audio": bool(clip.streams.audio)}


def dream_options(backbone_file) -> DreamOptions:
    """A one-octave, two-step dream on the tiny test backbone: a clip job's engine."""
    return DreamOptions(backbone=f"{backbone_file}:build", layers=("r3",), octaves=1, steps=2,
                        precision="fp32", tile=0)
