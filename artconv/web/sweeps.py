"""A settings sweep's contact sheet: the content, then one column per value of the option,
each showing its result once it is there, under a band naming the values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

THUMB, GAP, BAND = 160, 6, 22


def draw_sheet(path: Path, content: Path, option: str, values: Sequence[Any],
               results: Sequence[Path | None]) -> None:
    """Write the sheet to `path` (with its recipe naming the content): `results` holds one
    picture per value, None where it is not made yet."""
    # torch: with the first job, not with the server
    from artconv.io.images import save_image
    from artconv.io.sheet import contact_sheet

    cells = {(0, i): None if r is None else str(r) for i, r in enumerate(results)}
    scratch = path.with_name(f".{path.name}")  # hidden: never served half-made
    contact_sheet([str(content)], [None] * len(results), cells, scratch, thumb=THUMB, gap=GAP)
    with Image.open(scratch) as drawn:
        sheet = drawn.convert("RGB")
    scratch.unlink()
    # contact_sheet's first row holds style images; a sweep has none: values go there.
    labelled = Image.new("RGB", (sheet.width, sheet.height - THUMB + BAND), (24, 24, 24))
    labelled.paste(sheet.crop((0, THUMB + GAP, sheet.width, sheet.height)), (0, BAND))
    draw = ImageDraw.Draw(labelled)
    draw.text((GAP, 5), option, fill=(200, 200, 200))
    for i, value in enumerate(values):
        x = GAP + (i + 1) * (THUMB + GAP)
        draw.text((x, 5), str(value)[:24], fill=(230, 230, 230))
    save_image(labelled, path, inputs=[content])
