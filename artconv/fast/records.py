"""What a training run shows on disk while it runs: the loss history as CSV, its curve as
a PNG (drawn with PIL: nothing to install), and the preview sheet of held-out photos that
grows a column per preview (`artconv.io.sheet.contact_sheet`). All written atomically."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from artconv.io.files import atomic_write_bytes
from artconv.io.images import save_image
from artconv.io.sheet import contact_sheet

SHEET_COLUMNS = 8  # previews shown: the first, the last and evenly spaced ones between
SMOOTH_POINTS = 50  # the curve's moving average spans about 1/50 of the steps shown
_PLOT = (900, 420)
_MARGIN = (64, 16, 24, 36)  # left, top, right, bottom
_COLOURS = {"loss": (40, 40, 40), "content": (31, 119, 180), "style": (214, 39, 40),
            "tv": (44, 160, 44), "temporal": (148, 103, 189), "heldout": (255, 127, 14)}


def write_csv(path: Path, columns: Sequence[str], history: torch.Tensor) -> Path:
    """One row per step: `columns` (the first is the step), empty where not measured."""
    lines = [",".join(columns)]
    for row in history.tolist():
        lines.append(",".join(str(int(v)) if i == 0 else ("" if math.isnan(v) else f"{v:.6g}")
                              for i, v in enumerate(row)))
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def draw_curve(path: Path, columns: Sequence[str], history: torch.Tensor) -> Path:
    """The losses over the steps on a log scale: each column's moving average (the raw
    total faint behind it), held-out losses as dots."""
    image = Image.new("RGB", _PLOT, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _MARGIN
    x1, y1 = _PLOT[0] - right, _PLOT[1] - bottom
    draw.rectangle([left, top, x1, y1], outline=(160, 160, 160))
    data = history.double()
    finite = data[:, 1:][torch.isfinite(data[:, 1:]) & (data[:, 1:] > 0)]
    if data.shape[0] == 0 or finite.numel() == 0:
        return _save_png(image, path)
    lo, hi = math.log10(float(finite.min())), math.log10(float(finite.max()))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    first, last = float(data[0, 0]), float(data[-1, 0])
    span = max(last - first, 1.0)

    def at(step: float, value: float) -> tuple[float, float]:
        y = (math.log10(value) - lo) / (hi - lo)
        return left + (step - first) / span * (x1 - left), y1 - y * (y1 - top)

    for k in range(math.floor(lo), math.ceil(hi) + 1):  # decades
        if lo <= k <= hi:
            _, y = at(first, 10.0 ** k)
            draw.line([left, y, x1, y], fill=(230, 230, 230))
            draw.text((4, y - 6), f"1e{k}", fill=(90, 90, 90))
    draw.text((left, y1 + 8), f"step {int(first)}", fill=(90, 90, 90))
    draw.text((x1 - 90, y1 + 8), f"step {int(last)}", fill=(90, 90, 90))
    steps = data[:, 0].tolist()
    legend_x = left + 8
    for c, name in enumerate(columns[1:], start=1):
        values = data[:, c].tolist()
        colour = _COLOURS.get(name, (120, 120, 120))
        points = [(s, v) for s, v in zip(steps, values, strict=True)
                  if math.isfinite(v) and v > 0]
        if not points:
            continue
        if name == "heldout":
            for s, v in points:
                x, y = at(s, v)
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        else:
            if name == "loss":
                draw.line([at(s, v) for s, v in points], fill=(205, 205, 205), width=1)
            draw.line([at(s, v) for s, v in _smoothed(points)], fill=colour, width=2)
        draw.text((legend_x, top + 4), name, fill=colour)
        legend_x += 8 * len(name) + 16
    return _save_png(image, path)


def _smoothed(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Bias-corrected exponential moving average (as Adam's moments) in log space, over
    about 1/SMOOTH_POINTS of the points: a short run's curve does not lag behind."""
    decay = 1 - 1 / max(1.0, len(points) / SMOOTH_POINTS)
    out, avg, weight = [], 0.0, 0.0
    for s, v in points:
        avg = decay * avg + (1 - decay) * math.log(v)
        weight = decay * weight + (1 - decay)
        out.append((s, math.exp(avg / weight)))
    return out


def _save_png(image: Image.Image, path: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def preview_path(folder: Path, step: int, k: int) -> Path:
    return folder / f"step{step:08d}_{k}.png"


def save_previews(folder: Path, step: int, images: Sequence[torch.Tensor]) -> list[Path]:
    """The renders (3,h,w) of one preview, one PNG each."""
    return [save_image(image, preview_path(folder, step, k)) for k, image in enumerate(images)]


def sheet_steps(steps: Sequence[int], columns: int = SHEET_COLUMNS) -> list[int]:
    """At most `columns` preview steps: the first, the last and evenly spaced between."""
    steps = sorted(set(steps))
    if len(steps) <= columns:
        return steps
    picks = {round(i * (len(steps) - 1) / (columns - 1)) for i in range(columns)}
    return [steps[i] for i in sorted(picks)]


def write_sheet(path: Path, photos: Sequence[str], folder: Path, steps: Sequence[int],
                thumb: int = 192, style: str | None = None) -> Path:
    """Rows: the held-out photos (first column); columns: the previews, oldest first, the
    (first) style image heading the first."""
    shown = sheet_steps(steps)
    cells = {(r, c): str(preview_path(folder, s, r))
             for r in range(len(photos)) for c, s in enumerate(shown)}
    columns = [style if c == 0 else None for c in range(len(shown))]
    return contact_sheet(list(photos), columns, cells, path, thumb=thumb,
                         column_labels=[f"step {s}" for s in shown])
