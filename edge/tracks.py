"""A tracked recording: its frames, shots and people, saved as tracks.npz + summary.json."""

from __future__ import annotations

import json
import tokenize
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from base.files import atomic_path, write_json_atomic
from edge.capture import SourceInfo
from edge.errors import TrackingError
from edge.shots import Shot
from edge.tracking import NUM_LANDMARKS, TrackedFrame
from face3d import BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from face3d.pose import yaw_pitch_roll_deg

FORMAT_VERSION = 1
TRACKS_FILE = "tracks.npz"
SUMMARY_FILE = "summary.json"
MASKS_FILE = "masks.npz"


@dataclass(frozen=True)
class Person:
    """One identity of a recording: how many face frames it has and in which shots."""

    id: int
    frames: int
    shots: tuple[int, ...]


@dataclass
class Tracks:
    """Everything tracking learnt about one recording.

    masks: (T, H, W) uint8 foreground probability × 255, or None when not computed.
    tracking_ms: per-frame landmarker time (empty for loaded tracks).
    """

    source: SourceInfo
    frames: list[TrackedFrame]
    shots: list[Shot]
    people: list[Person]
    warnings: list[str] = field(default_factory=list)
    masks: npt.NDArray[np.uint8] | None = None
    tracking_ms: list[float] = field(default_factory=list)

    @property
    def face_frames(self) -> int:
        return sum(f.face_found for f in self.frames)

    def frames_of(self, person: int) -> list[TrackedFrame]:
        """Return the frames in which `person` was tracked."""
        return [f for f in self.frames if f.identity == person]

    def main_person(self) -> int:
        """Return the id of the person with the most face frames (-1 when nobody was grouped)."""
        return max(self.people, key=lambda p: p.frames).id if self.people else -1

    def summary(self) -> dict[str, Any]:
        """Return the JSON-ready summary a person reads first."""
        poses = np.array([yaw_pitch_roll_deg(f.matrix) for f in self.frames if f.matrix is not None])
        scores = np.array([f.blendshapes for f in self.frames if f.blendshapes is not None])
        summary: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "source": asdict(self.source),
            "frames": len(self.frames),
            "face_frames": self.face_frames,
            "face_fraction": round(self.face_frames / len(self.frames), 4) if self.frames else 0.0,
            "recovered_frames": sum(f.recovered for f in self.frames),
            "frames_without_face": [f.index for f in self.frames if not f.face_found],
            "shots": [asdict(s) for s in self.shots],
            "people": [asdict(p) for p in self.people],
            "warnings": self.warnings,
        }
        if self.tracking_ms:
            summary["tracking_ms_median"] = round(float(np.median(self.tracking_ms)), 2)
        if len(poses):
            summary["pose_range_deg"] = {
                axis: [round(float(poses[:, i].min()), 1), round(float(poses[:, i].max()), 1)]
                for i, axis in enumerate(("yaw", "pitch", "roll"))
            }
            summary["blendshape_max"] = {
                name: round(float(v), 3) for name, v in zip(BLENDSHAPE_NAMES, scores.max(axis=0), strict=True)
            }
        return summary


def save_tracks(tracks: Tracks, out_dir: str | Path) -> Path:
    """Write tracks.npz, summary.json (and masks.npz when masks exist) into `out_dir`; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = len(tracks.frames)
    landmarks = np.zeros((count, NUM_LANDMARKS, 3), np.float32)
    blendshapes = np.zeros((count, NUM_BLENDSHAPES), np.float32)
    matrices = np.tile(np.eye(4, dtype=np.float32), (count, 1, 1))
    for i, frame in enumerate(tracks.frames):
        if frame.landmarks is not None and frame.blendshapes is not None and frame.matrix is not None:
            landmarks[i], blendshapes[i], matrices[i] = frame.landmarks, frame.blendshapes, frame.matrix
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "index": np.array([f.index for f in tracks.frames], np.int64),
        "timestamp_ms": np.array([f.timestamp_ms for f in tracks.frames], np.int64),
        "face_found": np.array([f.face_found for f in tracks.frames], bool),
        "recovered": np.array([f.recovered for f in tracks.frames], bool),
        "shot": np.array([f.shot for f in tracks.frames], np.int32),
        "identity": np.array([f.identity for f in tracks.frames], np.int32),
        "landmarks": landmarks,
        "blendshapes": blendshapes,
        "matrix": matrices,
        "blendshape_names": np.array(BLENDSHAPE_NAMES),
    }

    with atomic_path(out / TRACKS_FILE) as partial, partial.open("wb") as stream:
        np.savez_compressed(stream, **arrays)  # type: ignore[arg-type]
    if tracks.masks is not None:
        with atomic_path(out / MASKS_FILE) as partial, partial.open("wb") as stream:
            np.savez_compressed(stream, masks=tracks.masks)
    write_json_atomic(out / SUMMARY_FILE, tracks.summary())
    return out


# What reading a damaged or foreign tracks folder raises: JSON, zip and numpy's .npy header parsing (which
# tokenizes a Python literal) each have their own errors; found by fuzzing (ops/fuzz/targets.py `tracks`).
UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError,
              NotImplementedError, RuntimeError, SyntaxError, RecursionError, zipfile.BadZipFile, zlib.error,
              tokenize.TokenError)  # fmt: skip


def load_tracks(path: str | Path) -> Tracks:
    """Return the Tracks saved in a folder (or its tracks.npz) by `save_tracks`; TrackingError when it holds none."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    try:
        return _read_tracks(folder)
    except UNREADABLE as error:
        raise TrackingError(f"{folder} holds no readable tracks ({error!r}); run `headcast track` again") from None


def _read_tracks(folder: Path) -> Tracks:
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    with np.load(folder / TRACKS_FILE) as data:
        arrays = {key: data[key] for key in data.files}
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise TrackingError(f"{folder}: tracks format {version}, this headcast reads {FORMAT_VERSION}; track again")
    if tuple(str(n) for n in arrays["blendshape_names"]) != BLENDSHAPE_NAMES:
        raise TrackingError(f"{folder}: blendshapes are in an unknown order; track again")
    source = SourceInfo(**summary["source"])
    size = (source.width, source.height)
    frames = []
    for i in range(len(arrays["index"])):
        found = bool(arrays["face_found"][i])
        frames.append(TrackedFrame(
            index=int(arrays["index"][i]),
            timestamp_ms=int(arrays["timestamp_ms"][i]),
            image_size=size,
            landmarks=arrays["landmarks"][i] if found else None,
            blendshapes=arrays["blendshapes"][i] if found else None,
            matrix=arrays["matrix"][i] if found else None,
            shot=int(arrays["shot"][i]),
            identity=int(arrays["identity"][i]),
            recovered=bool(arrays["recovered"][i]),
        ))  # fmt: skip
    masks = None
    if (folder / MASKS_FILE).is_file():
        with np.load(folder / MASKS_FILE) as data:
            masks = data["masks"]
    return Tracks(
        source=source,
        frames=frames,
        shots=[Shot(**s) for s in summary["shots"]],
        people=[Person(p["id"], p["frames"], tuple(p["shots"])) for p in summary["people"]],
        warnings=list(summary.get("warnings", [])),
        masks=masks,
    )
