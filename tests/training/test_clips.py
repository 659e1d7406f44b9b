"""Clips: saving, loading, refusing damage, and cutting them into training windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.clips import Clip, ClipError, ClipWindows, load_clip, save_clip, synthetic_corpus


@pytest.fixture(scope="module")
def corpus() -> list[Clip]:
    return synthetic_corpus(identities=2, frames=8, size_px=64)


def test_clips_round_trip_through_shards(corpus: list[Clip], tmp_path: Path) -> None:
    path = save_clip(corpus[0], tmp_path / "a" / "clip.npz")
    loaded = load_clip(path)
    assert loaded.identity == corpus[0].identity and loaded.source == corpus[0].source
    for name in ("frames", "masks", "nmfc", "mouth_boxes"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(corpus[0], name))
    assert not list(tmp_path.glob("a/.*partial*"))


def test_damaged_shards_are_refused(corpus: list[Clip], tmp_path: Path) -> None:
    path = save_clip(corpus[0], tmp_path / "clip.npz")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ClipError, match="not a readable clip"):
        load_clip(path)
    with pytest.raises(ClipError):
        load_clip(tmp_path / "absent.npz")


def test_inconsistent_clips_are_refused(corpus: list[Clip]) -> None:
    clip = corpus[0]
    with pytest.raises(ClipError, match="masks has shape"):
        Clip(clip.identity, clip.source, clip.frames, clip.masks[:-1], clip.nmfc, clip.mouth_boxes)


def test_windows_cover_every_clip_with_tensors_in_range(corpus: list[Clip]) -> None:
    windows = ClipWindows(corpus, length=3)
    assert len(windows) == 2 * (8 - 3 + 1)
    assert windows.identities == sorted(c.identity for c in corpus)
    item = windows[len(windows) - 1]
    assert item["frames"].shape == (3, 3, 64, 64) and item["nmfc"].shape == (3, 3, 64, 64)
    assert item["masks"].shape == (3, 1, 64, 64) and item["mouth_boxes"].shape == (3, 4)
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1
    assert item["nmfc"].min() >= 0 and item["nmfc"].max() <= 1
    assert int(item["identity"]) == 1
    expected = torch.from_numpy(corpus[1].frames[5]).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(item["frames"][0], expected)


def test_windows_need_long_enough_clips(corpus: list[Clip]) -> None:
    with pytest.raises(ClipError, match="no clip has 9 frames"):
        ClipWindows(corpus, length=9)
