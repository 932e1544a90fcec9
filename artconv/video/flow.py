"""Optical flow between frames, the forward-backward check, and warping.

Convention: a flow `f` from frame A to frame B is (H, W, 2) float32 (dx, dy) in pixels, so
that A(p) ~ B(p + f(p)). To bring the previous output into frame t we need the flow from
t to t-1 (`backward`): warped(p) = previous(p + backward(p)).

Which pixels may be pulled toward the warped previous frame (Ruder et al. 2016, after
Sundaram et al. 2010): a pixel of frame t is *disoccluded* (new) when following the
backward flow and then the forward flow does not bring it back, within a tolerance that
grows with the motion:

    |b(p) + f(p + b(p))|^2 > 0.01 (|b(p)|^2 + |f(p + b(p))|^2) + 0.5

and it lies on a *motion boundary* when the backward flow changes fast there:

    |grad b_x|^2 + |grad b_y|^2 > 0.01 |b(p)|^2 + 0.002

Pixels whose flow leaves the frame are new as well. The weight c is 0 on all of these and
1 elsewhere.

DIS (OpenCV, Kroeger et al. 2016) runs on the CPU in real time at 480p; RAFT (torchvision,
Teed & Deng 2020) is better and wants a GPU.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from artconv.errors import ArtconvError

DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}  # cv2.DISOPTICAL_FLOW_PRESET_*


@dataclass(frozen=True)
class FlowPair:
    """The flows between an earlier frame and frame t, and what follows from them."""

    forward: np.ndarray  # earlier -> t
    backward: np.ndarray  # t -> earlier

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(consistent, motion_boundary), each (H, W) bool, for frame t's pixels."""
        return consistency(self.forward, self.backward), motion_boundaries(self.backward)

    def weights(self) -> np.ndarray:
        """Ruder's c: 1 where frame t's pixel is seen in the earlier frame and lies on no
        motion boundary, else 0; (H, W) float32."""
        ok, edge = self.masks()
        return (ok & ~edge).astype(np.float32)


class FlowEstimator:
    """Forward and backward flow between two upright RGB uint8 frames (H, W, 3)."""

    def __init__(self, method: str = "dis", preset: str = "medium",
                 device: str | torch.device = "cpu") -> None:
        self.method, self.preset, self.device = method, preset, device
        self._local = threading.local()  # one DIS object per thread (they hold state)
        self._raft: Any = None
        if method not in ("dis", "raft"):
            raise ArtconvError(f"--flow {method!r}: choose dis or raft")

    def pair(self, earlier: np.ndarray, later: np.ndarray) -> FlowPair:
        if self.method == "raft":
            fwd, bwd = self._raft_pair(earlier, later)
            return FlowPair(fwd, bwd)
        a, b = _gray(earlier), _gray(later)
        dis = self._dis()
        return FlowPair(dis.calc(a, b, None), dis.calc(b, a, None))

    def _dis(self) -> Any:
        dis = getattr(self._local, "dis", None)
        if dis is None:
            import cv2

            dis = self._local.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
        return dis

    # -- RAFT --------------------------------------------------------------------------------
    def _raft_pair(self, earlier: np.ndarray, later: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
        model = self._raft_model()
        a, b = _to_tensor(earlier, self.device), _to_tensor(later, self.device)
        h, w = a.shape[-2:]
        # RAFT works on sizes divisible by 8, of at least 128 (its correlation pyramid)
        ph, pw = max(128, h + -h % 8) - h, max(128, w + -w % 8) - w
        a = F.pad(a, (0, pw, 0, ph), mode="replicate")
        b = F.pad(b, (0, pw, 0, ph), mode="replicate")
        with torch.inference_mode():
            flows = model(torch.cat([a, b]), torch.cat([b, a]))[-1]
        flows = flows[..., :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()
        return flows[0], flows[1]

    def _raft_model(self) -> Any:
        if self._raft is None:
            from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

            from artconv.nets.weights import fetch

            weights = Raft_Large_Weights.DEFAULT
            path = fetch(weights.url, what="RAFT optical flow weights")
            model = raft_large(weights=None)
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, OSError) as exc:
                raise ArtconvError(f"{path}: not RAFT weights ({exc}); delete it to download "
                                   "again") from None
            self._raft = model.eval().to(self.device)
        return self._raft


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _to_tensor(rgb: np.ndarray, device: Any) -> torch.Tensor:
    """RAFT's input: (1, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    return (t / 127.5 - 1).to(device)


def _sample(field: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`field` (H, W, C) read at p + flow(p), bilinear (outside: nearest edge)."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(field.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1],
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(field.shape)


def inside(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: p + flow(p) lands inside the frame."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool for frame t (the later frame): its pixel is found again by following the
    backward flow and then the forward flow back, and lands inside the earlier frame."""
    f_at = _sample(forward, backward)  # forward flow at p + b(p)
    err = ((backward + f_at) ** 2).sum(-1)
    tol = 0.01 * ((backward ** 2).sum(-1) + (f_at ** 2).sum(-1)) + 0.5
    return (err <= tol) & inside(backward)


def motion_boundaries(backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the backward flow changes fast (objects moving apart)."""
    gy, gx = np.gradient(backward, axis=(0, 1))
    grad = (gx ** 2).sum(-1) + (gy ** 2).sum(-1)
    return grad > 0.01 * (backward ** 2).sum(-1) + 0.002


def warp(image: torch.Tensor, backward: np.ndarray) -> torch.Tensor:
    """An earlier image (K, C, H, W) brought into frame t through the backward flow t ->
    earlier (H, W, 2) at the same size (bilinear; outside the frame: the nearest edge)."""
    h, w = backward.shape[:2]
    if tuple(image.shape[-2:]) != (h, w):
        raise ValueError(f"warp: image {tuple(image.shape[-2:])} and flow {(h, w)} differ")
    flow = torch.from_numpy(np.ascontiguousarray(backward)).to(image.device, torch.float32)
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=torch.float32),
                            torch.arange(w, device=image.device, dtype=torch.float32),
                            indexing="ij")
    # align_corners=True: -1 and 1 are the centres of the edge pixels
    gx = (xs + flow[..., 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[..., 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], -1)[None].expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def long_term_weights(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Ruder's long-term weights: `weights[j]` are the c of the j-th earlier frame (nearest
    first); each pixel keeps its weight only for the nearest frame where it is visible."""
    taken = np.zeros_like(weights[0])
    out = []
    for c in weights:
        out.append(np.maximum(c - taken, 0))
        taken = np.minimum(taken + c, 1)
    return out


__all__ = ["FlowEstimator", "FlowPair", "consistency", "inside", "long_term_weights",
           "motion_boundaries", "warp"]
