"""Progress within a tiled step: a display is told of every tile of both passes (a bar per
pass with the tile count and ETA), while callbacks still see each step once."""

from __future__ import annotations

import io

import torch
from rich.console import Console

from artconv.nets.extractor import FeatureExtractor
from artconv.progress import Progress
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import tiny_sequential

OPTS = {"content_layers": ("r3",), "style_layers": ("r1", "r2", "r3"), "size": 48,
        "precision": "fp32", "device": "cpu", "iterations": (2,), "tile": 12,
        "optimizer": "adam"}


class Recorder:
    def __init__(self) -> None:
        self.records: list = []

    def on_step(self, step) -> None:
        self.records.append(step)


def _run(progress) -> list:
    steps: list = []
    st = StyleTransfer(StyleOptions(**OPTS), extractor=FeatureExtractor(tiny_sequential()),
                       progress=progress)
    gen = torch.Generator().manual_seed(0)
    st.run(torch.rand(1, 3, 40, 48, generator=gen), [torch.rand(3, 40, 40, generator=gen)],
           callback=steps.append)
    return steps


def test_a_display_gets_each_tile_of_both_passes_and_callbacks_only_steps():
    display = Recorder()
    steps = _run(display)
    assert len(steps) == 2 and not any(s.within_step for s in steps)
    tiles = [r for r in display.records if r.within_step]
    n = tiles[0].tiles
    assert n > 1 and all(r.tiles == n for r in tiles)
    # per step: pass 1 (statistics) then pass 2 (gradient), tiles 1..n each
    expected = [(step, p, i) for step in (1, 2) for p in (1, 2) for i in range(1, n + 1)]
    assert [(r.step, r.tile_pass, r.tile) for r in tiles] == expected
    finished = [r for r in display.records if not r.within_step]
    assert [r.step for r in finished] == [1, 2]


def test_the_rich_display_draws_a_bar_per_tile_pass():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    progress = Progress(console=console)
    _run(progress)
    text = out.getvalue()
    assert "step 1/2 tiles (pass 1/2)" in text and "step 2/2 tiles (pass 2/2)" in text
    assert "ETA" in text
