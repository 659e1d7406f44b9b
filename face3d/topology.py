"""The canonical MediaPipe face topology: 468 vertices, 898 triangles, UVs and Procrustes weights.

Read from `geometry_pipeline_metadata_landmarks.binarypb` inside `face_landmarker.task` with a
small protobuf wire-format reader of our own (no MediaPipe classes). Layout of that message:

    GeometryPipelineMetadata: 1 = canonical Mesh3d (bytes), 2 = landmark refs (bytes, repeated),
                              3 = input source (varint)
    Mesh3d:                   1 = vertex type (varint, 0 = x y z u v), 2 = primitive (0 = triangles),
                              3 = vertex buffer (float, repeated), 4 = index buffer (uint32, repeated)
    WeightedLandmarkRef:      1 = landmark id (varint), 2 = weight (float)

Repeated scalars may be stored one by one or packed; both are accepted.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from base import assets
from face3d.errors import TopologyError

METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
NUM_VERTICES = 468
NUM_TRIANGLES = 898

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_Field = tuple[int, int, int | bytes]  # field number, wire type, value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise TopologyError("truncated varint in the mesh metadata")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise TopologyError("varint longer than 64 bits in the mesh metadata")


def _fields(data: bytes) -> Iterator[_Field]:
    """Yield every (field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _FIXED32:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == _FIXED64:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == _BYTES:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise TopologyError(f"unsupported protobuf wire type {wire} in the mesh metadata")
        if pos > len(data):
            raise TopologyError("truncated field in the mesh metadata")
        yield number, wire, value


def _floats(fields: list[_Field]) -> list[float]:
    out: list[float] = []
    for _, wire, value in fields:
        assert isinstance(value, bytes)
        if wire == _FIXED32:
            out.append(struct.unpack("<f", value)[0])
        elif wire == _BYTES:  # packed
            out.extend(struct.unpack(f"<{len(value) // 4}f", value[: len(value) // 4 * 4]))
        else:
            raise TopologyError(f"expected floats, found wire type {wire}")
    return out


def _uints(fields: list[_Field]) -> list[int]:
    out: list[int] = []
    for _, wire, value in fields:
        if wire == _VARINT:
            assert isinstance(value, int)
            out.append(value)
        elif wire == _BYTES:  # packed
            assert isinstance(value, bytes)
            pos = 0
            while pos < len(value):
                item, pos = _read_varint(value, pos)
                out.append(item)
        else:
            raise TopologyError(f"expected integers, found wire type {wire}")
    return out


def _by_number(data: bytes) -> dict[int, list[_Field]]:
    grouped: dict[int, list[_Field]] = {}
    for field in _fields(data):
        grouped.setdefault(field[0], []).append(field)
    return grouped


@dataclass(frozen=True)
class CanonicalMesh:
    """MediaPipe's canonical face mesh.

    vertices: (468, 3) float32, centimetres; y up, +z out of the face, the subject's right at -x.
    uv: (468, 2) float32, texture coordinates in [0, 1].
    triangles: (898, 3) int32 vertex indices.
    procrustes_ids: (33,) int32 landmark ids used for pose alignment, with
    procrustes_weights: (33,) float32 weights (not normalised).
    """

    vertices: npt.NDArray[np.float32]
    uv: npt.NDArray[np.float32]
    triangles: npt.NDArray[np.int32]
    procrustes_ids: npt.NDArray[np.int32]
    procrustes_weights: npt.NDArray[np.float32]

    def normalised_vertices(self) -> npt.NDArray[np.float32]:
        """Return the mean face scaled per axis into [0, 1]³: the colours of an NMFC image."""
        low = self.vertices.min(axis=0)
        span = self.vertices.max(axis=0) - low
        return ((self.vertices - low) / span).astype(np.float32)


def parse_geometry_metadata(data: bytes) -> CanonicalMesh:
    """Return the canonical mesh encoded in a GeometryPipelineMetadata protobuf message."""
    top = _by_number(data)
    if 1 not in top:
        raise TopologyError("the geometry metadata holds no canonical mesh (field 1)")
    mesh_bytes = top[1][0][2]
    assert isinstance(mesh_bytes, bytes)
    mesh = _by_number(mesh_bytes)
    vertex_type = _uints(mesh.get(1, []))
    primitive = _uints(mesh.get(2, []))
    if vertex_type not in ([], [0]) or primitive not in ([], [0]):
        raise TopologyError(
            f"unsupported mesh layout (vertex type {vertex_type}, primitive {primitive}); "
            "expected x y z u v vertices and triangles"
        )
    buffer = np.asarray(_floats(mesh.get(3, [])), dtype=np.float32)
    indices = np.asarray(_uints(mesh.get(4, [])), dtype=np.int64)
    if buffer.size % 5 or indices.size % 3:
        raise TopologyError(f"ragged mesh buffers: {buffer.size} floats, {indices.size} indices")
    vertices = buffer.reshape(-1, 5)
    if indices.size and indices.max() >= len(vertices):
        raise TopologyError("a triangle refers to a vertex that does not exist")
    refs = []
    for _, _, ref in top.get(2, []):
        assert isinstance(ref, bytes)
        fields = _by_number(ref)
        ids, weights = _uints(fields.get(1, [])), _floats(fields.get(2, []))
        refs.append((ids[0] if ids else 0, weights[0] if weights else 0.0))
    return CanonicalMesh(
        vertices=np.ascontiguousarray(vertices[:, :3]),
        uv=np.ascontiguousarray(vertices[:, 3:]),
        triangles=indices.reshape(-1, 3).astype(np.int32),
        procrustes_ids=np.asarray([r[0] for r in refs], dtype=np.int32),
        procrustes_weights=np.asarray([r[1] for r in refs], dtype=np.float32),
    )


def load_canonical_mesh(task_path: str | Path | None = None) -> CanonicalMesh:
    """Return the canonical mesh from `face_landmarker.task` (resolved as an asset when not given)."""
    path = assets.resolve("face_landmarker", task_path)
    try:
        with zipfile.ZipFile(path) as task:
            data = task.read(METADATA_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        raise TopologyError(f"{path} is not a face landmarker task with {METADATA_MEMBER}: {error}") from None
    mesh = parse_geometry_metadata(data)
    if len(mesh.vertices) != NUM_VERTICES or len(mesh.triangles) != NUM_TRIANGLES:
        raise TopologyError(
            f"{path}: expected {NUM_VERTICES} vertices and {NUM_TRIANGLES} triangles, "
            f"found {len(mesh.vertices)} and {len(mesh.triangles)}"
        )
    return mesh
