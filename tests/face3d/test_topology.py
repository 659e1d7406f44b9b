"""The canonical mesh read from the task file by our own protobuf reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from base import assets
from face3d import NUM_TRIANGLES, NUM_VERTICES, CanonicalMesh, TopologyError, load_canonical_mesh
from face3d.topology import parse_geometry_metadata


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    assets.ensure("face_landmarker")
    return load_canonical_mesh()


def test_counts_match_the_mediapipe_topology(mesh: CanonicalMesh) -> None:
    assert mesh.vertices.shape == (NUM_VERTICES, 3) == (468, 3)
    assert mesh.triangles.shape == (NUM_TRIANGLES, 3) == (898, 3)
    assert mesh.uv.shape == (468, 2)
    assert set(np.unique(mesh.triangles)) == set(range(468)), "every vertex belongs to a triangle"
    assert mesh.uv.min() >= 0 and mesh.uv.max() <= 1


def test_geometry_is_in_centimetres_with_y_up_and_z_out(mesh: CanonicalMesh) -> None:
    np.testing.assert_allclose(mesh.vertices[1], [0.0, -1.13, 7.48], atol=0.01)  # nose tip
    assert np.linalg.norm(mesh.vertices[33] - mesh.vertices[263]) == pytest.approx(8.89, abs=0.01)
    assert mesh.vertices[263, 0] > 0 > mesh.vertices[33, 0], "the subject's left eye corner is at +x"
    assert mesh.vertices[10, 1] > mesh.vertices[152, 1], "forehead (10) above chin (152)"


def test_procrustes_references(mesh: CanonicalMesh) -> None:
    assert len(mesh.procrustes_ids) == len(mesh.procrustes_weights) == 33
    assert len(set(mesh.procrustes_ids.tolist())) == 33
    assert mesh.procrustes_weights.min() == pytest.approx(0.0052, abs=1e-4)
    assert mesh.procrustes_weights.max() == pytest.approx(0.121, abs=1e-3)
    assert mesh.procrustes_weights.sum() == pytest.approx(1.055, abs=1e-3)


def test_normalised_mean_face_spans_the_unit_cube(mesh: CanonicalMesh) -> None:
    normalised = mesh.normalised_vertices()
    np.testing.assert_allclose(normalised.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(normalised.max(axis=0), 1.0, atol=1e-6)
    # An affine map per axis keeps the order of the vertices along each axis.
    for axis in range(3):
        assert np.array_equal(np.argsort(normalised[:, axis], kind="stable"),
                              np.argsort(mesh.vertices[:, axis], kind="stable"))  # fmt: skip


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _message(vertices: np.ndarray, triangles: np.ndarray, packed: bool) -> bytes:
    floats = vertices.astype("<f4").ravel()
    if packed:
        buffer = _field(3, 2, _varint(4 * len(floats)) + floats.tobytes())
        ints = b"".join(_varint(int(i)) for i in triangles.ravel())
        indices = _field(4, 2, _varint(len(ints)) + ints)
    else:
        buffer = b"".join(_field(3, 5, struct.pack("<f", f)) for f in floats)
        indices = b"".join(_field(4, 0, _varint(int(i))) for i in triangles.ravel())
    mesh = _field(1, 0, _varint(0)) + _field(2, 0, _varint(0)) + buffer + indices
    ref = _field(1, 0, _varint(2)) + _field(2, 5, struct.pack("<f", 0.25))
    return _field(1, 2, _varint(len(mesh)) + mesh) + _field(2, 2, _varint(len(ref)) + ref) + _field(3, 0, b"\x01")


@pytest.mark.parametrize("packed", [False, True])
def test_reader_accepts_separate_and_packed_repeated_fields(packed: bool) -> None:
    vertices = np.array([[0, 0, 0, 0, 0], [1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [1, 1, 0.5, 1, 1]], np.float32)
    triangles = np.array([[0, 1, 2], [1, 3, 2]])
    mesh = parse_geometry_metadata(_message(vertices, triangles, packed))
    np.testing.assert_array_equal(mesh.vertices, vertices[:, :3])
    np.testing.assert_array_equal(mesh.uv, vertices[:, 3:])
    np.testing.assert_array_equal(mesh.triangles, triangles)
    assert mesh.procrustes_ids.tolist() == [2]
    assert mesh.procrustes_weights.tolist() == [0.25]


@pytest.mark.parametrize("cut", [1, 7, 40, -3])
def test_truncated_metadata_is_refused(cut: int) -> None:
    vertices = np.zeros((3, 5), np.float32)
    data = _message(vertices, np.array([[0, 1, 2]]), packed=False)
    with pytest.raises(TopologyError):
        parse_geometry_metadata(data[:cut])


def test_a_triangle_pointing_past_the_vertices_is_refused() -> None:
    with pytest.raises(TopologyError, match="vertex that does not exist"):
        parse_geometry_metadata(_message(np.zeros((3, 5), np.float32), np.array([[0, 1, 3]]), packed=True))


def test_a_file_that_is_not_a_task_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "face_landmarker.task"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="does not match its pinned sha256"):
        load_canonical_mesh(bogus)
