"""Contact sheets: a grid of results with their inputs on the edges, for looking not reading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from artconv.errors import ArtconvError
from artconv.io.images import load_image, save_image, to_pil
from artconv.outputs import check_write_paths

BACKGROUND = (24, 24, 24)
EMPTY = (60, 60, 60)


def contact_sheet(rows: Sequence[str], columns: Sequence[str | None],
                  cells: Mapping[tuple[int, int], str | None], path: str | Path, *,
                  thumb: int = 192, gap: int = 6) -> Path:
    """Rows are inputs (shown in the first column), columns are styles (shown in the first
    row); `cells[(r, c)]` is the output for that pair, or None for a failed/missing one
    (drawn as a crossed grey box). A None column has no header image (a dream batch's one
    column of results)."""
    check_write_paths([("--sheet", path)],
                      [*rows, *(c for c in columns if c is not None),
                       *(p for p in cells.values() if p is not None)])
    width = (len(columns) + 1) * (thumb + gap) + gap
    height = (len(rows) + 1) * (thumb + gap) + gap
    sheet = Image.new("RGB", (width, height), BACKGROUND)

    def place(source: str | None, r: int, c: int) -> None:
        x, y = gap + c * (thumb + gap), gap + r * (thumb + gap)
        if source is None or not Path(source).exists():
            draw = ImageDraw.Draw(sheet)
            draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=EMPTY)
            draw.line([x, y, x + thumb - 1, y + thumb - 1], fill=BACKGROUND, width=3)
            return
        try:
            image = ImageOps.contain(to_pil(load_image(source)), (thumb, thumb))
        except ArtconvError:  # a bad input already failed its jobs; leave its cell blank
            place(None, r, c)
            return
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))

    for c, column in enumerate(columns):
        if column is not None:
            place(column, 0, c + 1)
    for r, row in enumerate(rows):
        place(row, r + 1, 0)
        for c in range(len(columns)):
            place(cells.get((r, c)), r + 1, c + 1)
    return save_image(sheet, path)
