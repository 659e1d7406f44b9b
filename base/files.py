"""Files written whole or not at all, and file hashes.

An atomic write goes to a temporary name in the target's own folder (so the rename stays on one file
system), is flushed to disk with fsync, then renamed over the target: a reader, or a run killed
half-way, sees the old file or the whole new one, never a part. On any error the temporary file is
removed. Temporary names are `.<name>.partial-<pid>-<random>`, so a cleanup can glob `.*.partial-*`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARTIAL_GLOB = ".*.partial-*"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`: write it whole; on leaving it is fsynced and renamed onto `path`.

    The folder is created when missing. When the block raises, the temporary file is deleted and
    `path` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        _fsync(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Return `path` after writing `data` (text as UTF-8) to it atomically."""
    with atomic_path(path) as partial:
        if isinstance(data, str):
            partial.write_text(data, encoding="utf-8")
        else:
            partial.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Return `path` after writing `data` as indented JSON (one trailing newline) to it atomically."""
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def sha256_of(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    # Without it a power cut after the rename can leave the new name on an empty file.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
