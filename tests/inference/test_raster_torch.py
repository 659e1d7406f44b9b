"""NMFC rasterisation in torch: the same images as face3d's CPU rasteriser, a batch at a time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from face3d.camera import project_to_image
from face3d.nmfc import NmfcMode, NmfcTopology, nmfc_topology, render_nmfc_px
from face3d.raster import rasterise
from face3d.topology import CanonicalMesh, load_canonical_mesh
from inference.raster_torch import (
    NmfcRenderer,
    RasterError,
    available_rasterisers,
    numpy_rasteriser,
    rasterise_batch,
)

FloatArray = npt.NDArray[np.float64]

# Coverage is decided by exact integer edge functions on the same 1/256 px grid with the same tie
# rule as face3d, so masks must agree on every pixel. Only the z-buffer differs: depth is compared
# in float32 (face3d: float64), so where two overlapping triangles' depths at a pixel centre are
# within float32 rounding (~1e-5 px of depth) of each other, the other one may win. Such near-ties
# only happen on the line where two folded surfaces cross, a few pixels of a side view; 0.5 % of an
# image (20 pixels at 64², 82 at 128²) bounds them with room to spare.
MIN_AGREEMENT = 0.995
# Equal pixels: the same triangle's colour (centre mode, bit-equal) or the same barycentric blend
# computed in float32 (face3d: float64, then float32), a few float32 ulps of values in [0, 1].
PIXEL_ATOL = 1e-6


@pytest.fixture(scope="module")
def mesh() -> CanonicalMesh:
    return load_canonical_mesh()


@pytest.fixture(scope="module")
def topology(mesh: CanonicalMesh) -> NmfcTopology:
    return nmfc_topology(mesh)


@pytest.fixture(scope="module")
def renderer(topology: NmfcTopology) -> NmfcRenderer:
    return NmfcRenderer(topology, "cpu")


def random_poses(mesh: CanonicalMesh, size_px: int, count: int, seed: int) -> FloatArray:
    """Return (count, 468, 3) projected canonical meshes: pitch ±30°, yaw ±70° (the far cheek folds
    behind the nose, so the z-buffer matters), roll ±20°, shifted up to 8 % of the width, head 0.5–0.75
    of the image wide."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(count):
        rotation = rng.uniform(-1, 1, 3) * np.radians([30, 70, 20])
        shift = rng.uniform(-0.08, 0.08, 2)
        scale = rng.uniform(0.035, 0.05)  # image widths per cm; the canonical face is ~15 cm wide
        poses.append(project_to_image(mesh.vertices, rotation, shift, scale, (size_px, size_px)))
    return np.stack(poses)


def cpu_reference(
    poses: FloatArray, size_px: int, topology: NmfcTopology, mode: NmfcMode
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Return face3d's NMFC images (B, H, W, 3) and masks (B, H, W) for the poses."""
    rendered = [render_nmfc_px(p, (size_px, size_px), topology, mode) for p in poses]
    return np.stack([r.image for r in rendered]), np.stack([r.mask for r in rendered])


@pytest.mark.parametrize("mode", ["centre", "barycentric"])
@pytest.mark.parametrize("size_px", [64, 128])
def test_the_torch_nmfc_equals_face3d_on_random_poses(
    mesh: CanonicalMesh,
    topology: NmfcTopology,
    renderer: NmfcRenderer,
    size_px: int,
    mode: NmfcMode,
) -> None:
    poses = random_poses(mesh, size_px, count=6, seed=size_px)
    expected_image, expected_mask = cpu_reference(poses, size_px, topology, mode)
    out = renderer(torch.from_numpy(poses), (size_px, size_px), mode)
    assert out.image.shape == (6, 3, size_px, size_px) and out.image.dtype == torch.float32
    assert out.mask.shape == (6, 1, size_px, size_px) and out.mask.dtype == torch.bool
    image = out.image.permute(0, 2, 3, 1).numpy()
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_array_equal(out.mask[:, 0].numpy(), expected_mask)
    for item in range(len(poses)):
        assert expected_mask[item].mean() > 0.15  # the face fills a good part of every image
        agree = (np.abs(image[item] - expected_image[item]).max(axis=-1) <= PIXEL_ATOL).mean()
        assert agree >= MIN_AGREEMENT, f"pose {item}: {agree:.4f} of the pixels agree"


def test_a_batch_equals_its_items_rendered_one_by_one(mesh: CanonicalMesh, renderer: NmfcRenderer) -> None:
    poses = torch.from_numpy(random_poses(mesh, 64, count=4, seed=1))
    batch = renderer(poses, (64, 64), "barycentric")
    for item in range(4):
        alone = renderer(poses[item : item + 1], (64, 64), "barycentric")
        assert torch.equal(alone.image[0], batch.image[item])
        assert torch.equal(alone.mask[0], batch.mask[item])
        assert torch.equal(alone.triangle_id[0], batch.triangle_id[item])


def test_the_nearest_surface_wins_as_on_the_cpu(
    mesh: CanonicalMesh, topology: NmfcTopology, renderer: NmfcRenderer
) -> None:
    # A 60° yaw folds the far cheek behind the nose: with depth negated the far surface shows,
    # so the images differ exactly where the z-buffer decides, and both must follow face3d.
    near = project_to_image(mesh.vertices, np.array([0.0, np.radians(60), 0.0]), (0.0, 0.0), 0.05, (96, 96))
    far = near * np.array([1.0, 1.0, -1.0])
    cpu_near, cpu_far = (render_nmfc_px(p, (96, 96), topology).raster.triangle_id for p in (near, far))
    assert (cpu_near != cpu_far).sum() > 20
    out = renderer(torch.from_numpy(np.stack([near, far])), (96, 96))
    np.testing.assert_array_equal(out.triangle_id[0].numpy(), cpu_near)
    np.testing.assert_array_equal(out.triangle_id[1].numpy(), cpu_far)


def triangle_soup(seed: int, flat: bool) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Return 30 vertices on the half-pixel grid of a 24² image (edges through pixel centres test the
    tie rule) and 40 random, overlapping triangles over them; with `flat`, every depth is 0, so on
    every overlap the depths tie exactly (in both float32 and float64) and the earlier triangle must win."""
    rng = np.random.default_rng(seed)
    xy = rng.integers(-4, 52, size=(30, 2)) / 2.0
    z = np.zeros((30, 1)) if flat else rng.uniform(-5, 5, size=(30, 1))
    faces = np.stack([rng.choice(30, size=3, replace=False) for _ in range(40)])
    return np.hstack([xy, z]), faces


@pytest.mark.parametrize("flat", [True, False])
def test_a_triangle_soup_rasterises_as_face3d(flat: bool) -> None:
    for seed in range(4):
        vertices, faces = triangle_soup(seed, flat)
        expected = rasterise(vertices, faces, (24, 24))
        out = rasterise_batch(torch.from_numpy(vertices)[None], torch.from_numpy(faces), (24, 24))
        ids = out.triangle_id[0].numpy()
        np.testing.assert_array_equal(ids >= 0, expected.mask)
        if flat:  # ties are exact in both: every pixel must agree
            np.testing.assert_array_equal(ids, expected.triangle_id)
        else:
            assert (ids == expected.triangle_id).mean() >= MIN_AGREEMENT
        weights = out.barycentric[0].numpy()
        np.testing.assert_allclose(weights[expected.mask].sum(axis=-1), 1.0, atol=1e-5)
        same = ids == expected.triangle_id
        np.testing.assert_allclose(weights[same], expected.barycentric[same], atol=1e-5)


def test_the_numpy_interface_equals_face3d_to_uint8(mesh: CanonicalMesh, topology: NmfcTopology) -> None:
    pose = random_poses(mesh, 64, count=1, seed=5)[0]
    for mode in ("centre", "barycentric"):
        render = numpy_rasteriser("torch", "cpu", topology, mode)
        got = render(pose, 64)
        assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
        np.testing.assert_array_equal(got, render_nmfc_px(pose, (64, 64), topology, mode).to_uint8())


def test_a_mesh_outside_the_image_covers_nothing(mesh: CanonicalMesh, renderer: NmfcRenderer) -> None:
    away = random_poses(mesh, 64, count=1, seed=3) + np.array([500.0, 0.0, 0.0])
    out = renderer(torch.from_numpy(away), (64, 64))
    assert not out.mask.any() and (out.triangle_id == -1).all() and (out.image == 0).all()


def test_bad_inputs_say_what_to_pass(renderer: NmfcRenderer) -> None:
    with pytest.raises(RasterError, match=r"\(B, 468, 3\)"):
        renderer(torch.zeros(2, 100, 3), (64, 64))
    with pytest.raises(RasterError, match="NaN or infinity"):
        renderer(torch.full((1, 468, 3), float("nan")), (64, 64))
    with pytest.raises(RasterError, match="image size"):
        renderer(torch.zeros(1, 468, 3), (0, 64))
    with pytest.raises(RasterError, match="mode"):
        renderer(torch.zeros(1, 468, 3), (64, 64), "flat")  # type: ignore[arg-type]


def test_only_the_torch_rasteriser_is_offered_on_the_cpu(topology: NmfcTopology) -> None:
    assert available_rasterisers("cpu") == ["torch"]
    with pytest.raises(RasterError, match=r"nvdiffrast.*not available on cpu"):
        NmfcRenderer(topology, "cpu", rasteriser="nvdiffrast")
    with pytest.raises(RasterError, match="unknown rasteriser"):
        NmfcRenderer(topology, "cpu", rasteriser="opengl")


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device: torch.cuda.is_available() is False"
)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", ["centre", "barycentric"])
def test_the_cuda_rasteriser_equals_the_cpu_one(
    mesh: CanonicalMesh, topology: NmfcTopology, renderer: NmfcRenderer, mode: NmfcMode
) -> None:
    poses = torch.from_numpy(random_poses(mesh, 128, count=8, seed=7))
    cpu = renderer(poses, (128, 128), mode)
    cuda = NmfcRenderer(topology, "cuda")(poses.cuda(), (128, 128), mode)
    assert torch.equal(cuda.mask.cpu(), cpu.mask)
    agree = ((cuda.image.cpu() - cpu.image).abs().amax(dim=1) <= PIXEL_ATOL).float().mean()
    assert float(agree) >= MIN_AGREEMENT


@pytest.mark.gpu
@pytest.mark.skipif(
    "nvdiffrast" not in available_rasterisers("cuda"), reason="needs a CUDA device and nvdiffrast installed"
)
def test_nvdiffrast_draws_the_same_face_away_from_edges(
    mesh: CanonicalMesh, topology: NmfcTopology, renderer: NmfcRenderer
) -> None:
    poses = torch.from_numpy(random_poses(mesh, 128, count=4, seed=8))
    cpu = renderer(poses, (128, 128))
    gpu = NmfcRenderer(topology, "cuda", rasteriser="nvdiffrast")(poses.cuda(), (128, 128))
    # nvdiffrast has its own tie rule and depth precision: samples on or near triangle edges may
    # go to the neighbour, and a face at 128² has about one edge crossing per few pixels.
    assert float((gpu.mask.cpu() == cpu.mask).float().mean()) >= 0.99
    assert float((gpu.triangle_id.cpu() == cpu.triangle_id).float().mean()) >= 0.9
