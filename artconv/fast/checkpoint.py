"""A training run's work folder and its checkpoint.

`MODEL.safetensors` is trained in `MODEL.safetensors.train/` beside it:

* `checkpoint.pt`: the network's weights, Adam's state, the step reached, the torch RNG
  state, the photos found broken so far, the loss history, and the run's identity (options,
  style images, photo list, loss network) that a resumed run must match;
* `losses.csv`, `losses.png`, `preview.png`, `preview/`, `train.log` (`artconv.fast.records`).

Every file is written atomically (a temporary beside it, renamed), so a SIGKILL leaves the
last checkpoint whole; the temporaries a killed run left are swept when the next starts.
The data order needs no state of its own: each step's crops are drawn from (seed, step)
(`artconv.fast.data`), so the step number is the data-order state.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes
from artconv.outputs import sweep_temporaries

WORK_SUFFIX = ".train"
CHECKPOINT = "checkpoint.pt"
FORMAT = 1  # bump when an older artconv could no longer resume from what this one writes


def work_folder(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + WORK_SUFFIX)


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    identity: dict[str, Any]
    step: int
    net: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: torch.Tensor
    history: torch.Tensor  # (steps done, columns) float64, the loss curve's rows
    columns: tuple[str, ...]
    broken: dict[str, str] = field(default_factory=dict)  # photo -> why it was set aside
    previews: tuple[int, ...] = ()  # steps whose previews were rendered
    elapsed: float = 0.0  # seconds of training so far (photos per second over resumes)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "identity": json.dumps(self.identity, sort_keys=True),
                    "step": self.step, "net": self.net, "optimizer": self.optimizer,
                    "rng": self.rng, "history": self.history, "columns": list(self.columns),
                    "broken": dict(self.broken), "previews": list(self.previews),
                    "elapsed": self.elapsed}, buffer)
        return buffer.getvalue()


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write the checkpoint atomically: after a crash the file holds this one or the last."""
    return atomic_write_bytes(folder / CHECKPOINT, checkpoint.to_bytes())


def load_checkpoint(folder: Path, identity: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint in `folder`, or None when there is none; one line when it belongs to
    another run (other options, styles, photos or network: named, with both values) or
    cannot be read. Temporaries a killed run left in the folder are removed first."""
    path = folder / CHECKPOINT
    if folder.is_dir():
        sweep_temporaries([path])
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        fmt = int(data["format"])
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtconvError(f"{path}: not a readable training checkpoint ({first}); remove "
                           "it to start over") from None
    if fmt > FORMAT:
        raise ArtconvError(f"{path}: written by a newer artconv (checkpoint format {fmt}); "
                           "upgrade artconv to resume it")
    before = json.loads(data["identity"])
    now = json.loads(json.dumps(identity, sort_keys=True))
    if before != now:
        raise ArtconvError(f"{folder}: holds a training run with {difference(before, now)}; "
                           "re-run with the same options to resume, or remove the folder "
                           "(or choose another output) to start over")
    return Checkpoint(before, int(data["step"]), data["net"], data["optimizer"], data["rng"],
                      data["history"], tuple(data["columns"]), dict(data["broken"]),
                      tuple(int(s) for s in data["previews"]), float(data["elapsed"]))


def difference(before: dict[str, Any], now: dict[str, Any], where: str = "") -> str:
    """The first thing that differs between two identities, as 'KEY X (now Y)'."""
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            return difference(a, b, f"{where}{key}.")
        name = f"--{key.replace('_', '-')}" if where == "options." else f"{where}{key}"
        return f"other {name}: {_short(a)} (now {_short(b)})"
    return "other settings"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
