"""Contact sheets (artconv.io.sheet): pictures packed in rows and columns, labels as big as
their text, no empty header band when there are no header pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from artconv.io.sheet import BACKGROUND, EMPTY, contact_sheet, label_font

THUMB, GAP = 64, 4


def flat(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as sheet:
        return np.asarray(sheet.convert("RGB")).astype(int)


def near(pixel: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(pixel - colour).max() <= 2)


def test_landscape_rows_are_packed_and_no_header_band(tmp_path):
    """A dream batch or a side-by-side (no header pictures) of wide pictures: each row is as
    tall as its pictures, the first row starts right at the top, a missing result fills its
    cell's row height."""
    rows = [flat(tmp_path / "a.png", (128, 64), (200, 40, 40)),
            flat(tmp_path / "b.png", (96, 48), (40, 200, 40))]
    cells = {(r, c): flat(tmp_path / f"o{r}{c}.png", (128, 64), (40, 40 + 60 * c, 200 - r))
             for r in range(2) for c in range(2)}
    cells[(1, 1)] = None
    sheet = pixels(contact_sheet(rows, [None, None], cells, tmp_path / "sheet.png",
                                 thumb=THUMB, gap=GAP))
    h = THUMB // 2  # every picture is 2:1, fitted to THUMB wide
    assert sheet.shape[:2] == (GAP + 2 * (h + GAP), GAP + 3 * (THUMB + GAP))
    ys, xs = (GAP, 2 * GAP + h), [GAP + c * (THUMB + GAP) for c in range(3)]
    # the first line of pixels is the first row's pictures, not an empty band
    assert near(sheet[ys[0], xs[0]], (200, 40, 40)) and near(sheet[ys[0], xs[2]], (40, 100, 200))
    assert near(sheet[ys[1], xs[0]], (40, 200, 40)) and near(sheet[ys[1], xs[1]], (40, 40, 199))
    assert near(sheet[ys[1] + h - 1, xs[2] + THUMB - 4], EMPTY)  # the missing result's box
    assert near(sheet[ys[1] + h, xs[2] + THUMB - 4], BACKGROUND)  # ... ends with its row
    assert all(near(sheet[ys[0] + h + g, x], BACKGROUND) for g in range(GAP) for x in xs)


def test_header_pictures_and_labels_take_the_room_of_their_text(tmp_path):
    """A style grid with labels: the label band is as tall as the text, the label column as
    wide as the longest row label, a column as wide as its label when that is wider than its
    pictures; a column with no style has nothing over it."""
    style = flat(tmp_path / "style.png", (48, 48), (40, 40, 220))  # grown to THUMB square
    rows = [flat(tmp_path / "tall.png", (32, 64), (220, 40, 40))]  # THUMB tall, half as wide
    cells = {(0, 0): flat(tmp_path / "o0.png", (32, 64), (40, 220, 40)),
             (0, 1): flat(tmp_path / "o1.png", (32, 64), (220, 220, 40))}
    row_labels, column_labels = ["harbour.jpg"], ["starry", "a label much wider than a cell"]
    path = contact_sheet(rows, [style, None], cells, tmp_path / "sheet.png", thumb=THUMB,
                         gap=GAP, row_labels=row_labels, column_labels=column_labels,
                         corner_label="content")
    sheet = pixels(path)

    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), label_font(THUMB)
    top = [draw.textbbox((0, 0), t, font=font, anchor="ls")
           for t in ("content", *column_labels)]
    band = max(-b[1] for b in top) + max(b[3] for b in top)
    label_width = draw.textbbox((0, 0), row_labels[0], font=font, anchor="lm")[2]
    widths = [max(THUMB // 2, top[0][2]), THUMB, top[2][2]]
    assert widths[2] > THUMB  # the long label widens its column rather than overlapping
    assert sheet.shape[:2] == (GAP + band + GAP + 2 * (THUMB + GAP),
                               GAP + label_width + GAP + sum(w + GAP for w in widths))

    x0 = GAP + label_width + GAP
    xs = [x0, x0 + widths[0] + GAP, x0 + widths[0] + widths[1] + 2 * GAP]
    y_header, y_row = GAP + band + GAP, GAP + band + GAP + THUMB + GAP
    # the band holds text and only text: the header pictures start right below it
    assert (np.abs(sheet[GAP:GAP + band] - BACKGROUND).max(-1) > 40).any()
    assert near(sheet[y_header, xs[1]], (40, 40, 220))
    assert near(sheet[y_header - 1, xs[1]], BACKGROUND)
    assert (sheet[y_header:y_row - GAP, xs[2]:xs[2] + widths[2]] == BACKGROUND).all()
    # row label beside the row, pictures centred in their cells
    assert (np.abs(sheet[y_row:y_row + THUMB, GAP:GAP + label_width] - BACKGROUND)
            .max(-1) > 40).any()
    assert near(sheet[y_row, xs[0] + widths[0] // 2], (220, 40, 40))
    assert near(sheet[y_row + THUMB - 1, xs[2] + widths[2] // 2], (220, 220, 40))
    assert near(sheet[y_row, xs[2] + 2], BACKGROUND)  # the narrow picture is centred


def test_labels_must_match_the_rows_and_columns(tmp_path):
    row = flat(tmp_path / "a.png", (32, 32), (200, 40, 40))
    with pytest.raises(ValueError, match="2 column_labels for 1"):
        contact_sheet([row], [None], {(0, 0): row}, tmp_path / "sheet.png", thumb=THUMB,
                      column_labels=["one", "two"])
    assert not (tmp_path / "sheet.png").exists()
