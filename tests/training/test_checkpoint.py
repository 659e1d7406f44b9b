"""Checkpoints: atomic writes, the last N kept, corrupt files refused by name and put aside."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from training.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    TrainingError,
    checkpoint_name,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def state(step: int) -> dict[str, Any]:
    """Return a small checkpoint mapping whose weights encode the step."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "step": step,
        "config": {"seed": 0},
        "weights": {"w": torch.full((4, 4), float(step))},
        "rng": {"python": (3, tuple(range(5)), None)},
    }


def test_save_and_load_round_trip_keeps_the_last_n_and_no_temporary_files(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_checkpoint(state(step), tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(30), checkpoint_name(40)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(30), checkpoint_name(40)]
    loaded = load_checkpoint(tmp_path / checkpoint_name(40))
    assert loaded["step"] == 40
    assert torch.equal(loaded["weights"]["w"], torch.full((4, 4), 40.0))
    assert loaded["rng"]["python"] == (3, (0, 1, 2, 3, 4), None)


def test_a_checkpoint_without_its_required_keys_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="config"):
        save_checkpoint({"format_version": 1, "step": 1}, tmp_path, keep=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not-a-mapping", "future-format"])
def test_a_damaged_checkpoint_is_refused_with_its_name(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(state(5), tmp_path, keep=3)
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a torch file" * 64)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-a-mapping":
        torch.save([1, 2, 3], path)
    else:
        torch.save({**state(5), "format_version": CHECKPOINT_FORMAT_VERSION + 1}, path)
    with pytest.raises(TrainingError, match=path.name):
        load_checkpoint(path)


def test_latest_good_checkpoint_sets_the_corrupt_newest_aside_and_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (2, 4):
        save_checkpoint(state(step), tmp_path, keep=3)
    newest = tmp_path / checkpoint_name(4)
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level(logging.ERROR, logger="training.checkpoint"):
        point = latest_good_checkpoint(tmp_path)
    assert point.path == tmp_path / checkpoint_name(2)
    assert point.step == 2
    assert point.refused == [(newest, tmp_path / f"{newest.name}.corrupt")]
    assert (tmp_path / f"{newest.name}.corrupt").stat().st_size == 100  # kept, not overwritten
    assert not newest.exists()
    assert any(newest.name in record.getMessage() for record in caplog.records)
    # The set-aside file is no checkpoint any more: a second scan finds the good one directly.
    assert latest_good_checkpoint(tmp_path).refused == []


def test_when_no_checkpoint_loads_the_scan_raises_instead_of_starting_over(tmp_path: Path) -> None:
    path = save_checkpoint(state(3), tmp_path, keep=1)
    path.write_bytes(b"garbage")
    with pytest.raises(TrainingError, match=r"no checkpoint .* could be read"):
        latest_good_checkpoint(tmp_path)
    assert (tmp_path / f"{path.name}.corrupt").exists()


def test_an_empty_or_missing_folder_means_a_fresh_start(tmp_path: Path) -> None:
    assert latest_good_checkpoint(tmp_path / "absent").path is None
    assert latest_good_checkpoint(tmp_path).step == 0


def test_a_second_corrupt_file_of_the_same_name_does_not_overwrite_the_first(tmp_path: Path) -> None:
    for attempt in range(2):
        save_checkpoint(state(1), tmp_path, keep=1)
        save_checkpoint(state(2), tmp_path, keep=2)
        (tmp_path / checkpoint_name(2)).write_bytes(f"bad {attempt}".encode())
        assert latest_good_checkpoint(tmp_path).step == 1
    assert (tmp_path / f"{checkpoint_name(2)}.corrupt").read_bytes() == b"bad 0"
    assert (tmp_path / f"{checkpoint_name(2)}.corrupt-1").read_bytes() == b"bad 1"
