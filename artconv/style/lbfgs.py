"""L-BFGS over preallocated buffers, without a host sync: the iterates of
`torch.optim.LBFGS(max_iter=1, line_search_fn=None)`, the way the style engine drives it (one
loss evaluation per `step()`, the gradient already in `.grad`).

torch's LBFGS keeps its history as lists of fresh tensors (a new `y`, `s`, direction and
flattened gradient every step: memory the allocator hands back and takes again, page faults
on the CPU) and reads the device several times a step (`ys > 1e-10`, `alpha=al[i]` per
history entry, the first step length, the descent test). Here the history is two ring
buffers (history, n) written in place, the two-loop recursion runs on a scratch vector with
0-dim tensors as its coefficients (`addcmul_` broadcasts them; nothing is read back), and
every decision torch takes on the host becomes a mask on the device:

* a curvature pair with `y.s <= 1e-10` gets rho = 0, which makes it a no-op in both loops
  (alpha = beta = 0), and leaves H_diag unchanged, as torch skips it. It still takes a ring
  slot, so after such a pair, with the history already full, the oldest pair leaves one
  step earlier than in torch (torch drops it on the next accepted pair); nothing else differs;
* a direction that is not a descent (`g.d > -tolerance_change`) is not taken (step 0).

`tolerance_grad` stops torch before any update when the largest gradient is at most it; the
style engine disables it (-1) and so does this class (only the disabled value is accepted,
as deciding it would need the host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

CURVATURE_EPS = 1e-10  # torch.optim.LBFGS accepts a pair when y.s exceeds this


class CompactLBFGS(torch.optim.Optimizer):
    """`torch.optim.LBFGS(params, lr, max_iter=1, history_size, tolerance_grad=-1,
    tolerance_change)` with its history in preallocated buffers and no host sync per step.

    The parameters are optimised as one flat vector, as torch does; a single contiguous
    parameter (the style engine's one image) is used in place, without a gathered copy.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1.0,
                 history_size: int = 100, tolerance_change: float = 1e-9,
                 tolerance_grad: float = -1.0) -> None:
        if tolerance_grad >= 0:
            raise ValueError("CompactLBFGS: tolerance_grad must be disabled (< 0): deciding "
                             "it needs a host sync; use torch.optim.LBFGS for it")
        if history_size < 1:
            raise ValueError(f"CompactLBFGS: history_size {history_size} must be >= 1")
        super().__init__(params, dict(lr=lr, history_size=history_size,
                                      tolerance_change=tolerance_change))
        if len(self.param_groups) != 1:
            raise ValueError("CompactLBFGS doesn't support per-parameter options "
                             "(parameter groups)")
        self._params: list[torch.Tensor] = self.param_groups[0]["params"]
        ref = self._params[0]
        n = sum(p.numel() for p in self._params)
        m = history_size
        # torch.empty: on the CPU the pages of slots never written are never touched.
        self._old_stps = torch.empty((m, n), dtype=ref.dtype, device=ref.device)  # s
        self._old_dirs = torch.empty((m, n), dtype=ref.dtype, device=ref.device)  # y
        self._ro = torch.zeros(m, dtype=ref.dtype, device=ref.device)
        self._al = torch.zeros(m, dtype=ref.dtype, device=ref.device)
        self._d = torch.empty(n, dtype=ref.dtype, device=ref.device)
        self._prev_grad = torch.empty(n, dtype=ref.dtype, device=ref.device)
        self._t = torch.zeros((), dtype=ref.dtype, device=ref.device)
        self._h_diag = torch.ones((), dtype=ref.dtype, device=ref.device)
        # Views made once: indexing in the loop would make 6 new view objects per pair.
        self._s_rows = list(self._old_stps.unbind())
        self._y_rows = list(self._old_dirs.unbind())
        self._ro_at = list(self._ro.unbind())
        self._al_at = list(self._al.unbind())
        self._flat = (torch.empty(n, dtype=ref.dtype, device=ref.device)
                      if not self._in_place() else None)
        self.n_iter = 0  # steps taken (torch's state["n_iter"])
        self._pairs = 0  # curvature pairs offered to the ring (accepted or not)

    def _in_place(self) -> bool:
        return len(self._params) == 1 and self._params[0].is_contiguous()

    def _flat_grad(self) -> torch.Tensor:
        if self._flat is None:
            p = self._params[0]
            if p.grad is None:
                return p.new_zeros(p.numel())
            return p.grad.view(-1) if p.grad.is_contiguous() else p.grad.reshape(-1)
        offset = 0
        for p in self._params:
            k = p.numel()
            part = self._flat[offset:offset + k]
            if p.grad is None:
                part.zero_()
            else:
                part.copy_(p.grad.reshape(-1))
            offset += k
        return self._flat

    def _add_step(self, step: torch.Tensor) -> None:
        """x += step * d (step a 0-dim tensor: no host read)."""
        offset = 0
        for p in self._params:
            k = p.numel()
            part = self._d[offset:offset + k]
            if p.is_contiguous():
                p.view(-1).addcmul_(part, step)
            else:
                p.add_((part * step).view_as(p))
            offset += k

    @torch.no_grad()
    def step(self, closure: Callable[[], object] | None = None) -> object:  # type: ignore[override]
        """One L-BFGS step from the gradient in `.grad`; `closure` (called first, as torch
        does) may return the loss, which is returned and otherwise not used."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr, m = group["lr"], group["history_size"]
        g = self._flat_grad()
        self.n_iter += 1
        d, t = self._d, self._t
        if self.n_iter == 1:
            torch.neg(g, out=d)
            # torch: t = min(1, 1 / |g|_1) * lr
            torch.clamp(g.abs().sum().reciprocal(), max=1.0, out=t)
            t.mul_(lr)
        else:
            slot = self._pairs % m
            self._pairs += 1
            s, y = self._s_rows[slot], self._y_rows[slot]
            torch.mul(d, t, out=s)
            torch.sub(g, self._prev_grad, out=y)
            ys = y.dot(s)
            accept = ys > CURVATURE_EPS
            self._ro[slot] = torch.where(accept, 1.0 / ys, 0.0)
            self._h_diag.copy_(torch.where(accept, ys / y.dot(y), self._h_diag))
            self._direction(g, min(self._pairs, m), slot)
            t.fill_(lr)
        self._prev_grad.copy_(g)
        # a direction that is not a descent is not taken (torch breaks before the step)
        gtd = g.dot(d)
        self._add_step(torch.where(gtd > -group["tolerance_change"], 0.0, t))
        return loss

    def _direction(self, g: torch.Tensor, count: int, newest: int) -> None:
        """d = -H g by the two-loop recursion over the `count` newest pairs, in place."""
        m = self._ro.numel()
        order = [(newest - j) % m for j in range(count)]  # newest first
        q = self._d  # the old direction is in `s` already: its buffer is the scratch
        torch.neg(g, out=q)
        al, ro, s, y = self._al_at, self._ro_at, self._s_rows, self._y_rows
        for i in order:
            torch.mul(s[i].dot(q), ro[i], out=al[i])
            q.addcmul_(y[i], al[i], value=-1)  # q - al y: -(y al) = y (-al) exactly
        q.mul_(self._h_diag)
        for i in reversed(order):
            be_i = y[i].dot(q) * ro[i]
            q.addcmul_(s[i], al[i] - be_i)
