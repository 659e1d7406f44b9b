"""Training checkpoints: atomic writes, the last N kept, corrupt files refused and put aside.

A checkpoint is one `torch.save` file `step-<8 digits>.pt` in a run's `checkpoints/` folder
holding a mapping with at least `format_version`, `step` and `config`. Writes go to a hidden
temporary name in the same folder first and are then renamed with `os.replace`, so a reader (or
a resumed run after a kill) sees either the previous set of checkpoints or the complete new file.

A file that cannot be read back (truncated by a full disk, overwritten with garbage, from an
incompatible headcast) is never used and never overwritten: `latest_good_checkpoint` logs an
error naming it, renames it to `<name>.corrupt` and falls back to the previous good one.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from base.errors import HeadcastError
from base.files import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_GLOB = "step-*.pt"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})\.pt$")
REQUIRED_KEYS = ("format_version", "step", "config")
# What torch.load raises on truncated or garbage bytes: the zip reader's and the weights-only
# unpickler's errors (a garbled opcode stream surfaces as IndexError or KeyError inside it).
_UNREADABLE = (
    RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, IndexError, KeyError,
    TypeError, AttributeError,
)  # fmt: skip


class TrainingError(HeadcastError):
    """Training cannot go on (bad checkpoint, bad configuration, a failed worker); the message says what to do."""


def checkpoint_name(step: int) -> str:
    """Return the file name of the checkpoint taken after `step` optimisation steps."""
    return f"step-{step:08d}.pt"


def checkpoint_step(path: Path) -> int | None:
    """Return the step encoded in a checkpoint's file name, or None when the name is not a checkpoint's."""
    match = _CHECKPOINT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(folder: Path) -> list[Path]:
    """Return the checkpoint files in `folder`, oldest step first (set-aside `.corrupt` files excluded)."""
    if not folder.is_dir():
        return []
    found = [(step, path) for path in folder.glob(CHECKPOINT_GLOB) if (step := checkpoint_step(path)) is not None]
    return [path for _, path in sorted(found)]


def save_checkpoint(state: dict[str, Any], folder: Path, keep: int) -> Path:
    """Return the path of `state` written atomically as `folder/step-<step>.pt`; older ones beyond `keep` are deleted.

    state: a mapping with `format_version`, `step`, `config` and tensors, dicts, lists, numbers and
    strings only (what `torch.load(weights_only=True)` reads back).
    """
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise TrainingError(f"a checkpoint needs the keys {', '.join(missing)}; this is a bug in the caller")
    if keep < 1:
        raise TrainingError(f"keep_checkpoints must be ≥ 1, got {keep}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / checkpoint_name(int(state["step"]))
    with atomic_path(target) as partial, partial.open("wb") as stream:
        torch.save(state, stream)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Return the state mapping stored in the checkpoint at `path`.

    Raises TrainingError naming the file when it is missing, truncated, not a torch file, holds
    something other than a checkpoint mapping, or was written by an incompatible format version.
    """
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as error:
        raise TrainingError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); "
            "it cannot be used — resume from an earlier checkpoint or start over"
        ) from error
    if not isinstance(state, dict):
        raise TrainingError(f"checkpoint {path} holds a {type(state).__name__}, not a headcast training checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise TrainingError(f"checkpoint {path} lacks {', '.join(missing)}: it is not a headcast training checkpoint")
    if state["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise TrainingError(
            f"checkpoint {path} has format {state['format_version']}, this headcast reads "
            f"{CHECKPOINT_FORMAT_VERSION}: use the headcast version that wrote it"
        )
    return state


def set_aside(path: Path) -> Path:
    """Return the new path of a refused checkpoint, renamed to `<name>.corrupt` (or `.corrupt-<n>`) beside it."""
    target = path.with_name(f"{path.name}.corrupt")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{counter}")
        counter += 1
    path.replace(target)
    return target


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts.

    path, state: the newest checkpoint that loaded, or None when the run starts from scratch.
    refused: (original path, where it was moved) for every newer checkpoint that could not be read.
    """

    path: Path | None
    state: dict[str, Any] | None
    refused: list[tuple[Path, Path]] = field(default_factory=list)

    @property
    def step(self) -> int:
        """Return the step to continue from (0 for a fresh run)."""
        return int(self.state["step"]) if self.state is not None else 0


def latest_good_checkpoint(folder: Path) -> ResumePoint:
    """Return the newest checkpoint in `folder` that loads, setting aside (renaming) newer ones that do not.

    Every refused file is logged at ERROR level with the reason. Raises TrainingError when
    checkpoints exist but none of them loads, rather than silently starting over.
    """
    refused: list[tuple[Path, Path]] = []
    candidates = list_checkpoints(folder)
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path)
        except TrainingError as error:
            moved = set_aside(path)
            logger.error("%s; kept aside as %s, falling back to the previous checkpoint", error, moved)
            refused.append((path, moved))
            continue
        if int(state["step"]) != checkpoint_step(path):
            moved = set_aside(path)
            logger.error("checkpoint %s says step %s, not its name's; kept aside as %s", path, state["step"], moved)
            refused.append((path, moved))
            continue
        return ResumePoint(path=path, state=state, refused=refused)
    if candidates:
        names = ", ".join(str(original) for original, _ in refused)
        raise TrainingError(
            f"no checkpoint in {folder} could be read (refused: {names}; kept aside as *.corrupt). "
            "Start over with resume disabled, or restore a checkpoint from a backup."
        )
    return ResumePoint(path=None, state=None, refused=refused)
