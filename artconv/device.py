"""Where the work runs and in which precision."""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator

import torch

from artconv.errors import ArtconvError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; explicit requests are checked."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ArtconvError(f"--device {spec!r}: not a device (auto, cpu, cuda, cuda:N, mps)") \
            from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArtconvError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ArtconvError(f"--device {spec}: only {torch.cuda.device_count()} CUDA "
                               "device(s) here")
    elif device.type == "mps" and not _mps_available():
        raise ArtconvError(f"--device {spec}: Apple MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ArtconvError(f"--device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 matrix instructions (AVX512-BF16 or AMX), which oneDNN
    uses for bf16 convolutions; without them bf16 is emulated and slower than fp32."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CUDA with bf16 support and on CPUs with bf16 matrix units
    (measured 3-4x faster there, final losses within a few percent of fp32: see
    benchmarks/README.md); fp32 elsewhere (MPS autocast to bf16 is not reliably faster)."""
    if precision in ("fp32", "bf16"):
        if precision == "bf16" and device.type == "mps":
            raise ArtconvError("--precision bf16: not supported on MPS; use fp32")
        return precision
    if precision != "auto":
        raise ArtconvError(f"--precision {precision!r}: choose auto, fp32 or bf16")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the network; callers compute Gram matrices and losses in fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """channels_last (NHWC) suits cuDNN's tensor-core kernels and oneDNN's CPU convolutions
    (VGG19 forward+backward at 512 px on the CPU here: 1.12 s contiguous, 1.08 s NHWC);
    MPS kernels are not tuned for it."""
    return torch.contiguous_format if device.type == "mps" else torch.channels_last


@contextlib.contextmanager
def fp32() -> Iterator[None]:
    """Leave autocast for the losses: Gram matrices of bf16 features lose too much."""
    with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
        yield


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
