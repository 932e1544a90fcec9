"""The training photos (`artconv.fast.data`): listing, setting aside what cannot be read,
and crops that depend only on (seed, step)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.errors import ArtconvError
from artconv.fast import data


def solid(path, colour, size=(60, 40)):
    """A photo of one colour (w, h): its crops say which photo they came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def truncated_png(path, size=(64, 48)):
    """A PNG whose header reads fine but whose pixels are cut off: passes the scan, fails
    when decoded."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def which(crop: torch.Tensor) -> int:
    """The index of the solid colour a crop was cut from."""
    mean = (crop.mean((1, 2)) * 255).round().tolist()
    return COLOURS.index(tuple(int(v) for v in mean))


def test_list_photos_reads_folders_globs_and_list_files(tmp_path):
    a = solid(tmp_path / "photos" / "a.png", COLOURS[0])
    b = solid(tmp_path / "photos" / "b.jpg", COLOURS[1])
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    c = solid(tmp_path / "more" / "c.png", COLOURS[2])
    listing = tmp_path / "more" / "list.txt"
    listing.write_text("# my photos\nc.png\n\nhttps://example.org/d.jpg\n"
                       + json.dumps({"content": str(a)}) + "\n")
    assert data.list_photos(str(tmp_path / "photos")) == [str(a), str(b)]
    assert data.list_photos([str(tmp_path / "photos" / "*.png"), str(listing)]) == [
        str(a), str(c), "https://example.org/d.jpg"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ArtconvError, match="empty.txt: the list names no photos"):
        data.list_photos(str(empty))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ArtconvError, match="nothing: folder holds no image files"):
        data.list_photos(str(tmp_path / "nothing"))


def test_scan_sets_aside_unreadable_photos_with_the_reason(tmp_path):
    good = solid(tmp_path / "good.png", COLOURS[0])
    text = tmp_path / "fake.jpg"
    text.write_text("hello")
    told = []
    usable, skipped = data.scan([str(good), str(text), str(tmp_path / "gone.png")],
                                lambda p, why: told.append(p))
    assert [p.source for p in usable] == [str(good)] and usable[0].hw == (40, 60)
    assert dict(skipped) == {str(text): "not an image file (format not recognised)",
                             str(tmp_path / "gone.png"): "no such file"}
    assert told == [str(text), str(tmp_path / "gone.png")]


def test_batches_depend_only_on_seed_and_step_and_epochs_visit_every_photo(tmp_path):
    paths = [solid(tmp_path / f"p{i}.png", c) for i, c in enumerate(COLOURS)]
    photos, _ = data.scan([str(p) for p in paths])

    def photo_set(seed=0):
        return data.PhotoSet(photos, crop=16, batch_size=1, seed=seed)

    one, two = photo_set(), photo_set()
    # each epoch (5 steps of 1) sees each photo once, in its own order
    epoch0 = [which(one.batch(s)[0]) for s in range(5)]
    epoch1 = [which(one.batch(s)[0]) for s in range(5, 10)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(5))
    assert epoch0 != epoch1 or epoch0 != [which(photo_set(1).batch(s)[0]) for s in range(5)]
    # a fresh set (a resumed run) gives the very same crops, in any order of asking
    assert torch.equal(two.batch(7), one.batch(7)) and torch.equal(two.batch(3), one.batch(3))
    big = data.PhotoSet(photos, crop=16, batch_size=4, seed=0)
    assert big.batch(0).shape == (4, 3, 16, 16) and big.position(3) == (2, 2)


def test_random_crops_vary_in_place_scale_and_flip(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    photos, _ = data.scan([str(path)])
    crops = data.PhotoSet(photos, crop=16, batch_size=8, seed=0).batch(0)
    assert crops.shape == (8, 3, 16, 16) and crops.min() >= 0 and crops.max() <= 1
    assert len({tuple(c.flatten()[:20].tolist()) for c in crops}) == 8


def test_a_photo_corrupt_inside_is_skipped_once_and_replaced_the_same_way(tmp_path):
    paths = [solid(tmp_path / f"p{i}.png", c) for i, c in enumerate(COLOURS[:3])]
    bad = truncated_png(tmp_path / "p9_bad.png")
    photos, skipped = data.scan([*map(str, paths), str(bad)])
    assert not skipped and len(photos) == 4  # the header is fine
    told = []
    first = data.PhotoSet(photos, crop=16, batch_size=4, seed=3,
                          on_skip=lambda p, why: told.append((p, why)))
    batches = [first.batch(s) for s in range(4)]  # 4 epochs: the bad photo comes up
    assert [p for p, _ in told] == [str(bad)] and "corrupt" in told[0][1]
    assert all(b.shape == (4, 3, 16, 16) for b in batches)
    assert all(which(c) in (0, 1, 2) for b in batches for c in b)
    again = data.PhotoSet(photos, crop=16, batch_size=4, seed=3)  # a resumed run
    assert all(torch.equal(again.batch(s), batches[s]) for s in (3, 1))


def test_split_holds_out_at_most_a_fifth_spread_over_the_list(tmp_path):
    photos = [data.Photo(f"p{i}", (10, 10)) for i in range(20)]
    train, held = data.split(photos, 4)
    assert len(held) == 4 and len(train) == 16 and not set(train) & set(held)
    assert [p.source for p in held] == ["p2", "p7", "p12", "p17"]
    assert data.split(photos[:4], 4) == (photos[:4], [])
