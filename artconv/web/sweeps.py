"""A settings sweep's contact sheet: the content, then one column per value of the option,
each showing its result once it is there, under a band naming the values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

THUMB, GAP = 160, 6


def draw_sheet(path: Path, content: Path, option: str, values: Sequence[Any],
               results: Sequence[Path | None]) -> None:
    """Write the sheet to `path` (atomically: never served half-made): `results` holds one
    picture per value, None where it is not made yet."""
    # torch: with the first job, not with the server
    from artconv.io.sheet import contact_sheet

    cells = {(0, i): None if r is None else str(r) for i, r in enumerate(results)}
    contact_sheet([str(content)], [None] * len(results), cells, path, thumb=THUMB, gap=GAP,
                  column_labels=[str(v)[:24] for v in values], corner_label=option)
