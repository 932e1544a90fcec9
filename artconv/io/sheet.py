"""Contact sheets: a grid of results with their inputs on the edges, for looking not reading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from artconv.errors import ArtconvError
from artconv.io.images import load_image, save_image, to_pil
from artconv.outputs import check_write_paths

BACKGROUND = (24, 24, 24)
EMPTY = (60, 60, 60)
TEXT = (230, 230, 230)


def contact_sheet(rows: Sequence[str], columns: Sequence[str | None],
                  cells: Mapping[tuple[int, int], str | None], path: str | Path, *,
                  thumb: int = 192, gap: int = 6, row_labels: Sequence[str] | None = None,
                  column_labels: Sequence[str] | None = None,
                  corner_label: str | None = None) -> Path:
    """Rows are inputs (shown in the first column), columns are styles (shown in the first
    row); `cells[(r, c)]` is the output for that pair, or None for a failed/missing one
    (drawn as a crossed grey box). A None column has no header image (a dream batch's one
    column of results); with none at all there is no header row.

    Pictures keep their shape within `thumb` x `thumb`; each row is as tall as its tallest
    picture and each column as wide as its widest, so nothing is padded to a square.
    `column_labels` (one per column) and `corner_label` (over the inputs) go in a line of
    text on top, `row_labels` (one per row) in a column of text on the left; each is as big
    as its text."""
    check_write_paths([("--sheet", path)],
                      [*rows, *(c for c in columns if c is not None),
                       *(p for p in cells.values() if p is not None)])
    for what, labels, count in (("row_labels", row_labels, len(rows)),
                                ("column_labels", column_labels, len(columns))):
        if labels is not None and len(labels) != count:
            raise ValueError(f"contact_sheet: {len(labels)} {what} for {count}")
    # grid[r][c]: the header row and the inputs column are row 0 and column 0
    grid = [[None, *(None if c is None else _thumbnail(c, thumb) for c in columns)]]
    grid += [[_thumbnail(row, thumb), *(_thumbnail(cells.get((r, c)), thumb)
                                         for c in range(len(columns)))]
             for r, row in enumerate(rows)]

    font = label_font(thumb)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    top = [corner_label, *(column_labels or [None] * len(columns))]
    # baseline-anchored boxes (left, -ascent, right, descent): the labels share a baseline
    boxes = [measure.textbbox((0, 0), t, font=font, anchor="ls") if t else None for t in top]
    ascent = max((-b[1] for b in boxes if b), default=0)
    band = ascent + max(b[3] for b in boxes if b) if any(boxes) else 0
    label_width = max((measure.textbbox((0, 0), t, font=font, anchor="lm")[2]
                       for t in row_labels or () if t), default=0)

    widths = [max(_extent([line[c] for line in grid], 0, thumb), boxes[c][2] if boxes[c] else 0)
              for c in range(len(top))]
    heights = [_extent(line, 1, thumb) for line in grid]
    xs = _starts(widths, gap + (label_width + gap if label_width else 0), gap)
    ys = _starts(heights, gap + (band + gap if band else 0), gap)
    sheet = Image.new("RGB", (xs[-1], ys[-1]), BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    for c, (text, box) in enumerate(zip(top, boxes, strict=True)):
        if text and box:
            draw.text((xs[c] + (widths[c] - box[2]) // 2, gap + ascent), text, fill=TEXT,
                      font=font, anchor="ls")
    for r, text in enumerate(row_labels or (), start=1):
        if text:
            draw.text((gap, ys[r] + heights[r] // 2), text, fill=TEXT, font=font, anchor="lm")
    for r, line in enumerate(grid):
        for c, picture in enumerate(line):
            x, y, w, h = xs[c], ys[r], widths[c], heights[r]
            if isinstance(picture, Image.Image):
                sheet.paste(picture, (x + (w - picture.width) // 2, y + (h - picture.height) // 2))
            elif picture is _MISSING:
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=EMPTY)
                draw.line([x, y, x + w - 1, y + h - 1], fill=BACKGROUND, width=3)
    return save_image(sheet, path)


def label_font(thumb: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The labels' font: readable beside a `thumb`-sized picture without crowding it."""
    return ImageFont.load_default(size=max(10, thumb // 12))


_MISSING = "missing"  # a cell whose result failed or is not there (yet)


def _thumbnail(source: str | None, thumb: int) -> Image.Image | str:
    """`source` shrunk (or grown) to fit `thumb` x `thumb`, or `_MISSING`."""
    if source is None or not Path(source).exists():
        return _MISSING
    try:
        return ImageOps.contain(to_pil(load_image(source)), (thumb, thumb))
    except ArtconvError:  # a bad input already failed its jobs; leave its cell blank
        return _MISSING


def _extent(line: Sequence[Image.Image | str | None], axis: int, thumb: int) -> int:
    """How wide (axis 0) or tall (axis 1) a column or row of cells is: its largest picture;
    `thumb` when it only has empty boxes; 0 when it draws nothing (no header images)."""
    sizes = [p.size[axis] for p in line if isinstance(p, Image.Image)]
    return max(sizes, default=thumb if any(p is _MISSING for p in line) else 0)


def _starts(sizes: Sequence[int], first: int, gap: int) -> list[int]:
    """Where each column (row) of `sizes` starts, then the sheet's width (height): each is
    followed by a gap, except one that draws nothing (size 0)."""
    starts = [first]
    for size in sizes:
        starts.append(starts[-1] + (size + gap if size else 0))
    return starts
