"""Training data as clips: one identity's consecutive frames with their masks, NMFC images and mouth boxes.

A clip is what preprocessing writes (one `.npz` shard per identity and source video) and what
training reads; `ClipWindows` cuts clips into the K-frame windows that the sequential generator,
D_D and the losses need. The synthetic corpus produces clips directly.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from base.errors import HeadcastError
from base.files import atomic_path

CLIP_FORMAT_VERSION = 2
# Version 1 clips had no meshes: they still load, and train only generators without warp references.
READABLE_FORMATS = (1, 2)


class ClipError(HeadcastError):
    """A clip or shard is unusable; the message says which and why."""


@dataclass(frozen=True)
class Clip:
    """Consecutive frames of one identity, square and of one size.

    identity: the person's name (a corpus folder or file stem); source: where the frames came from.
    frames: (T, S, S, 3) uint8 RGB; masks: (T, S, S) uint8 foreground (255 = person);
    nmfc: (T, S, S, 3) uint8 NMFC images; mouth_boxes: (T, 4) int64 (x0, y0, x1, y1), x1/y1 exclusive;
    vertices_px: (T, 468, 3) float32 each frame's fitted mesh in the crop's pixels (x, y down, depth
    smaller nearer), what the warp needs; None for clips preprocessed before meshes were kept.
    """

    identity: str
    source: str
    frames: npt.NDArray[np.uint8]
    masks: npt.NDArray[np.uint8]
    nmfc: npt.NDArray[np.uint8]
    mouth_boxes: npt.NDArray[np.int64]
    vertices_px: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        count, size = len(self.frames), self.frames.shape[1] if self.frames.ndim == 4 else -1
        expected: dict[str, tuple[npt.NDArray[np.generic], tuple[int, ...]]] = {
            "frames": (self.frames, (count, size, size, 3)),
            "masks": (self.masks, (count, size, size)),
            "nmfc": (self.nmfc, (count, size, size, 3)),
            "mouth_boxes": (self.mouth_boxes, (count, 4)),
        }
        if self.vertices_px is not None:
            expected["vertices_px"] = (self.vertices_px, (count, 468, 3))
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise ClipError(f"clip {self.identity!r} from {self.source}: {name} has shape {array.shape}, "
                                f"expected {shape}")  # fmt: skip
        if count == 0:
            raise ClipError(f"clip {self.identity!r} from {self.source} has no frames")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size_px(self) -> int:
        return int(self.frames.shape[1])

    def slice(self, frames: slice) -> Clip:
        """Return the clip's frames `frames` as a clip of the same identity and source."""
        vertices = self.vertices_px[frames] if self.vertices_px is not None else None
        return Clip(self.identity, self.source, self.frames[frames], self.masks[frames], self.nmfc[frames],
                    self.mouth_boxes[frames], vertices)  # fmt: skip


def save_clip(clip: Clip, path: str | Path) -> Path:
    """Write `clip` to `path` (.npz) atomically: a reader sees the old shard or the whole new one."""
    target = Path(path)
    meshes = {} if clip.vertices_px is None else {"vertices_px": clip.vertices_px.astype(np.float32)}
    with atomic_path(target) as partial, partial.open("wb") as stream:
        np.savez(
            stream,
            allow_pickle=False,
            format_version=np.array(CLIP_FORMAT_VERSION),
            identity=np.array(clip.identity),
            source=np.array(clip.source),
            frames=clip.frames,
            masks=clip.masks,
            nmfc=clip.nmfc,
            mouth_boxes=clip.mouth_boxes,
            **meshes,
        )
    return target


def load_clip(path: str | Path) -> Clip:
    """Return the clip saved at `path`; raises ClipError for a damaged or foreign file."""
    try:
        with np.load(path) as data:
            version = int(data["format_version"])
            if version not in READABLE_FORMATS:
                raise ClipError(f"{path}: clip format {version}, this headcast reads {READABLE_FORMATS}")
            return Clip(
                identity=str(data["identity"]),
                source=str(data["source"]),
                frames=data["frames"],
                masks=data["masks"],
                nmfc=data["nmfc"],
                mouth_boxes=data["mouth_boxes"].astype(np.int64),
                vertices_px=data["vertices_px"].astype(np.float32) if "vertices_px" in data.files else None,
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ClipError(f"{path} is not a readable clip ({error}); preprocess it again") from None


class ClipWindows(Dataset[dict[str, torch.Tensor]]):
    """Every window of `length` consecutive frames of every clip (stride `stride`), as training tensors.

    An item: nmfc (K, 3, S, S) float32 in [0, 1]; frames (K, 3, S, S) float32 in [−1, 1];
    masks (K, 1, S, S) float32 in [0, 1]; mouth_boxes (K, 4) int64; identity () int64, the index of
    the clip's identity in `identities` (sorted names, one row of D_I's W each).
    """

    def __init__(self, clips: Sequence[Clip], length: int = 3, stride: int = 1) -> None:
        if length < 1 or stride < 1:
            raise ClipError(f"window length and stride must be ≥ 1, got {length} and {stride}")
        sizes = {clip.size_px for clip in clips}
        if len(sizes) > 1:
            raise ClipError(f"clips of different sizes {sorted(sizes)}: preprocess them to one size")
        self.clips = list(clips)
        self.length = length
        self.identities = sorted({clip.identity for clip in clips})
        self._identity_index = {name: i for i, name in enumerate(self.identities)}
        self._windows = [(c, start) for c, clip in enumerate(self.clips)
                         for start in range(0, len(clip) - length + 1, stride)]  # fmt: skip
        if not self._windows:
            raise ClipError(f"no clip has {length} frames; need longer clips or a shorter window")

    def __len__(self) -> int:
        return len(self._windows)

    def location(self, index: int) -> tuple[int, slice]:
        """Return window `index`'s clip (an index into `clips`) and its frames there."""
        c, start = self._windows[index]
        return c, slice(start, start + self.length)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, start = self._windows[index]
        clip = self.clips[c]
        window = slice(start, start + self.length)
        frames = torch.from_numpy(clip.frames[window]).permute(0, 3, 1, 2).float() / 127.5 - 1
        nmfc = torch.from_numpy(clip.nmfc[window]).permute(0, 3, 1, 2).float() / 255
        masks = torch.from_numpy(clip.masks[window]).unsqueeze(1).float() / 255
        return {
            "frames": frames,
            "nmfc": nmfc,
            "masks": masks,
            "mouth_boxes": torch.from_numpy(clip.mouth_boxes[window]),
            "identity": torch.tensor(self._identity_index[clip.identity]),
        }


def synthetic_corpus(identities: int = 4, frames: int = 60, size_px: int = 128, seed: int = 0) -> list[Clip]:
    """Return the built-in synthetic corpus: one clip per random person (seeds seed, seed+1, …)."""
    from training.synthetic import synthetic_clip

    clips = []
    for person in range(identities):
        clip = synthetic_clip(seed=seed + person, frames=frames, size_px=size_px)
        clips.append(Clip(f"synthetic-{seed + person:04d}", f"synthetic seed {seed + person}", clip.frames,
                          clip.masks, clip.nmfc, clip.mouth_boxes, clip.vertices_px))  # fmt: skip
    return clips
