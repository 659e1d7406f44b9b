"""Corpora of talking-head videos: which identities a folder holds and which videos show each.

Two layouts are understood:

- folders (VoxCeleb-style): every sub-folder of the root is one identity, and every video at any
  depth below it shows that person (`id10001/1zcIwhmdeo4/00001.mp4`);
- files (FaceForensics-style): a flat folder of videos, one identity per file stem (`000.mp4`).

Names that come from the file system become folder and file names of the preprocessed output, so
they are validated (no path tricks, no hidden names) and kept exactly as they are (stable across
runs); anything that cannot be used is listed in `Corpus.rejected` with a reason instead of failing
the whole corpus.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from base.errors import HeadcastError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})

# Letters, digits, dot, dash, underscore; starting with a letter or digit, so never "", ".", ".."
# or a hidden name. 128 characters leave room for the output paths built from it.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_KEY_SEPARATOR = "__"


class CorpusError(HeadcastError):
    """A corpus or its preprocessed output cannot be used; the message says what to do about it."""


def validate_identity(name: str) -> str:
    """Return `name` unchanged when it is a safe identity name; raises CorpusError otherwise."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise CorpusError(
            f"{name!r} is not a usable identity name: use 1-128 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class CorpusVideo:
    """One video of one identity.

    key: the video's name within its identity, safe as a file stem and unique in it (the path below
    the identity folder with '__' for '/' and no extension; a short hash is added where two paths
    would otherwise share a key). relative: the path below the corpus root, as a string with '/'.
    """

    identity: str
    path: Path
    key: str
    relative: str


@dataclass(frozen=True)
class Corpus:
    """The identities of a corpus folder and their videos.

    root: the folder, resolved; layout: "folders" (one identity per sub-folder) or "files" (one per
    file stem); videos: every usable video, sorted by identity then path; rejected: (path relative to
    the root, reason) for entries that look like videos or identities but cannot be used.
    """

    root: Path
    layout: Literal["folders", "files"]
    videos: tuple[CorpusVideo, ...]
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def identities(self) -> Mapping[str, tuple[Path, ...]]:
        """Return identity name → its video paths, names sorted."""
        grouped: dict[str, list[Path]] = {}
        for video in self.videos:
            grouped.setdefault(video.identity, []).append(video.path)
        return {name: tuple(paths) for name, paths in sorted(grouped.items())}

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[CorpusVideo]:
        return iter(self.videos)


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _videos_below(folder: Path) -> list[Path]:
    """Return the videos at any depth below `folder`, sorted, skipping hidden files and folders."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if _is_video(path):
            found.append(path)
    return sorted(found)


def _keys(identity_folder: Path, paths: list[Path], flat: bool) -> list[str]:
    """Return a unique, file-name-safe key per video of one identity (see CorpusVideo.key)."""
    raw = []
    for path in paths:
        parts = [path.stem] if flat else [*path.relative_to(identity_folder).parent.parts, path.stem]
        raw.append(_UNSAFE.sub("_", _KEY_SEPARATOR.join(parts)).lstrip("._-") or "video")
    keys = []
    for key, path in zip(raw, paths, strict=True):
        unique = key
        if raw.count(key) > 1:
            # Same stem with two extensions, or names that differ only in replaced characters.
            relative = path.relative_to(identity_folder).as_posix()
            unique = f"{key}-{hashlib.sha256(relative.encode()).hexdigest()[:8]}"
        keys.append(unique[:160])
    return keys


def discover_corpus(root: str | Path) -> Corpus:
    """Return the Corpus in folder `root` (layout detected); raises CorpusError for a missing or empty root.

    A root with identity sub-folders is the folders layout; a root with only loose videos is the
    files layout; a root with both is refused, since it is unclear whose the loose videos are.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no such folder. Give a folder of talking-head videos "
                          "(one sub-folder per person, or one video per person).")  # fmt: skip
    folder = folder.resolve()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    loose = [p for p in entries if _is_video(p)]
    identity_folders = [(p, _videos_below(p)) for p in entries if p.is_dir()]
    identity_folders = [(p, videos) for p, videos in identity_folders if videos]
    if loose and identity_folders:
        raise CorpusError(
            f"{folder} holds both identity folders ({identity_folders[0][0].name}, …) and loose videos "
            f"({loose[0].name}, …): move each loose video into its person's folder, or keep only loose videos"
        )
    rejected: list[tuple[str, str]] = []
    videos: list[CorpusVideo] = []
    if identity_folders:
        layout: Literal["folders", "files"] = "folders"
        for identity_folder, paths in identity_folders:
            try:
                identity = validate_identity(identity_folder.name)
            except CorpusError as error:
                rejected.append((identity_folder.name, str(error)))
                continue
            for path, key in zip(paths, _keys(identity_folder, paths, flat=False), strict=True):
                videos.append(CorpusVideo(identity, path, key, path.relative_to(folder).as_posix()))
    else:
        layout = "files"
        by_identity: dict[str, list[Path]] = {}
        for path in loose:
            try:
                by_identity.setdefault(validate_identity(path.stem), []).append(path)
            except CorpusError as error:
                rejected.append((path.name, str(error)))
        for identity, paths in sorted(by_identity.items()):
            for path, key in zip(paths, _keys(folder, paths, flat=True), strict=True):
                videos.append(CorpusVideo(identity, path, key, path.name))
    if not videos:
        extensions = ", ".join(sorted(e.lstrip(".") for e in VIDEO_EXTENSIONS))
        detail = f"; rejected: {rejected[0][1]}" if rejected else ""
        raise CorpusError(f"{folder} holds no usable video ({extensions}){detail}")
    return Corpus(folder, layout, tuple(videos), tuple(rejected))
