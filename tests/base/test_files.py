"""Atomic writes leave the old file or the whole new one, never a part; file hashes read in blocks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from base.files import PARTIAL_GLOB, atomic_path, sha256_of, write_atomic, write_json_atomic


def test_a_write_lands_whole_in_a_new_folder_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.json"
    assert write_json_atomic(target, {"frames": 270, "name": "é"}) == target
    assert json.loads(target.read_text(encoding="utf-8")) == {"frames": 270, "name": "é"}
    assert target.read_text(encoding="utf-8").endswith("}\n")
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_part(tmp_path: Path) -> None:
    target = tmp_path / "shard.npz"
    write_atomic(target, b"the old shard")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as partial:
        partial.write_bytes(b"half of a new")
        assert partial.parent == target.parent and partial.name.startswith(".shard.npz.partial-")
        raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"the old shard"
    assert not list(tmp_path.glob(PARTIAL_GLOB)) and [p.name for p in tmp_path.iterdir()] == ["shard.npz"]


def test_text_is_written_as_utf8_and_replaces_what_was_there(tmp_path: Path) -> None:
    target = tmp_path / "notes.md"
    write_atomic(target, "first")
    write_atomic(target, "λ_pixel = 100\n")
    assert target.read_bytes() == "λ_pixel = 100\n".encode()


def test_sha256_of_reads_past_its_block_size(tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * 4096 + 3)  # a little over 5 MiB: several 1 MiB blocks and a tail
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
    assert sha256_of(str(path)) == sha256_of(path)
