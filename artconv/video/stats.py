"""A measure of flicker: the temporal warping error of Lai et al. 2018 ("Learning Blind
Video Temporal Consistency"): the mean squared difference between each output frame and the
previous output frame warped by the *input's* optical flow, over the pixels the
forward-backward check finds visible in both (and off motion boundaries), averaged over
the frames. Pixels in [0, 1], so 1e-3 is an RMS difference of about 8 of 255.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from artconv.errors import ArtconvError
from artconv.video import flow as flowlib


@dataclass(frozen=True)
class WarpingError:
    mean: float  # over the frame pairs
    per_pair: tuple[float, ...]
    frames: int


def _as_array(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        t = frame.detach().float().cpu()
        t = t[0] if t.dim() == 4 else t
        return t.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(frame)


def warping_error(outputs: Iterable[np.ndarray | torch.Tensor],
                  inputs: Iterable[np.ndarray | torch.Tensor], *,
                  estimator: flowlib.FlowEstimator | None = None,
                  skip_cuts: float = 0.6, partial: bool = False) -> WarpingError:
    """E_warp of `outputs` against the flow of `inputs` (frames as (H, W, 3) uint8 arrays or
    (3, H, W) tensors; the inputs are resized to the outputs' size). Pairs where more than
    `skip_cuts` of the pixels are not found again (scene cuts) are left out.

    The outputs must be one for each input, else the frames do not correspond and the
    figure would mean nothing (refused); with `partial` (an output cut short) there may be
    fewer, compared with the first inputs."""
    import cv2

    estimator = estimator or flowlib.FlowEstimator()
    errors: list[float] = []
    prev_in = prev_out = None
    count = 0
    for out, inp in itertools.zip_longest(outputs, inputs, fillvalue=None):
        if out is None and partial:
            break
        if out is None or inp is None:
            more, fewer = ("output", "input") if inp is None else ("input", "output")
            raise ArtconvError(f"the frames do not correspond: the {fewer} has {count} "
                               f"frames, the {more} more (give the input the output was "
                               "made from)")
        out, inp = _as_array(out), _as_array(inp)
        count += 1
        if inp.shape[:2] != out.shape[:2]:
            inp = cv2.resize(inp, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_AREA)
        if prev_in is not None:
            pair = estimator.pair(prev_in, inp)
            consistent, edges = pair.masks()
            if 1 - consistent.mean() <= skip_cuts:
                c = (consistent & ~edges).astype(np.float32)
                moved = flowlib.warp(torch.from_numpy(prev_out).permute(2, 0, 1)[None].float(),
                                     pair.backward)[0].permute(1, 2, 0).numpy()
                diff = ((out.astype(np.float32) - moved) / 255) ** 2
                if c.sum() > 0:
                    errors.append(float((diff * c[..., None]).sum() / (3 * c.sum())))
        prev_in, prev_out = inp, out
    if count < 2:
        raise ArtconvError("warping error: needs at least two frames")
    if not errors:
        raise ArtconvError("warping error: no pair of frames without a scene cut")
    return WarpingError(float(np.mean(errors)), tuple(errors), count)


__all__ = ["WarpingError", "warping_error"]
