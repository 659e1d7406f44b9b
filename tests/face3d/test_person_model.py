"""PersonModel: shapes, the versioned file, and the summary image."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from face3d.errors import FitError
from face3d.person import PersonModel, summary_image, write_summary_png
from face3d.synthetic_tracks import random_person
from face3d.topology import load_canonical_mesh


@pytest.fixture(scope="module")
def model() -> PersonModel:
    person, _ = random_person(np.random.default_rng(3), active=6)
    return PersonModel(person.neutral, person.basis, np.array([0.01, -0.02, 0.02]), np.array([0.01, 0.01, 0.001]), 50)


def test_shape_is_neutral_plus_basis_times_weights(model: PersonModel) -> None:
    w = np.zeros(52)
    w[[3, 9]] = [0.5, 1.0]
    expected = model.neutral + 0.5 * model.basis[:, :, 3] + model.basis[:, :, 9]
    np.testing.assert_allclose(model.shape(w), expected, atol=1e-12)
    batch = model.shape(np.stack([w, np.zeros(52)]))
    assert batch.shape == (2, 468, 3)
    np.testing.assert_allclose(batch[1], model.neutral)


def test_save_load_round_trip(model: PersonModel, tmp_path: Path) -> None:
    loaded = PersonModel.load(model.save(tmp_path / "person.npz"))
    np.testing.assert_array_equal(loaded.neutral, model.neutral)
    np.testing.assert_array_equal(loaded.basis, model.basis)
    np.testing.assert_array_equal(loaded.pose_mean, model.pose_mean)
    assert loaded.frames == 50 and loaded.has_pose_statistics


def test_load_refuses_unknown_versions_nan_and_garbage(model: PersonModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "person.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(tmp_path / "v2.npz", **{**arrays, "format_version": np.array(2)})
    with pytest.raises(FitError, match="format 2"):
        PersonModel.load(tmp_path / "v2.npz")
    broken = arrays["neutral"].copy()
    broken[5, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **{**arrays, "neutral": broken})
    with pytest.raises(FitError, match="NaN"):
        PersonModel.load(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FitError, match="not a readable"):
        PersonModel.load(tmp_path / "junk.npz")


def test_constructor_refuses_wrong_shapes() -> None:
    with pytest.raises(FitError):
        PersonModel(np.zeros((467, 3)), np.zeros((468, 3, 52)))


def test_summary_png_is_a_valid_image(model: PersonModel, tmp_path: Path) -> None:
    triangles = load_canonical_mesh().triangles
    image, names = summary_image(model, triangles, count=3)
    assert names[0] == "neutral" and len(names) == 4
    assert image.shape == (4 * 192, 384, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2  # wireframe and tinted vertices drawn
    data = write_summary_png(model, triangles, tmp_path / "summary.png", count=3).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    # Decode the IDAT stream ourselves: filter byte 0 then the RGB rows, exactly the image.
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start : start + length]), np.uint8).reshape(4 * 192, -1)
    assert np.all(raw[:, 0] == 0)
    np.testing.assert_array_equal(raw[:, 1:].reshape(image.shape), image)
