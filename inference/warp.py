"""The target's reference frames warped to a driven frame: what the generator refines instead of painting a face.

`face3d/warp.py` explains the correspondence field and computes it on the CPU, one driven frame at
a time. Here the same fields are computed batched in torch (`warp_fields_batch`, on the torch
rasteriser, any device), the references are sampled through them (`grid_sample`) and packed into
the generator's warp input (`warp_input`):

per reference k, 5 channels: its RGB warped (3, in [−1, 1]), its foreground mask warped (1, in
[0, 1]) and its blend prior (1): where it holds a valid correspondence, weighted by how alike its
mesh is to the driven one beyond the rigid motion (`face3d.warp.reference_affinity`), normalised
over the K references at every pixel. G's blend starts from that prior (its blend logits are
added to the prior's log), so an untrained G already shows the best-matching reference warped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.nn import functional

from base.errors import HeadcastError
from face3d.topology import NUM_VERTICES
from face3d.warp import (
    FADE_INNER,
    FADE_OUTER,
    GAUSSIAN_TRUNCATE,
    SEAM_PX,
    WarpField,
    WarpTopology,
    reference_affinity,
    vertex_visibility,
    warp_fields,
    warp_topology,
)
from inference.raster_torch import rasterise_batch

CHANNELS_PER_REFERENCE = 5
# Every reference keeps this much prior where none is valid (the inner mouth, the background), so
# the blend is always a convex combination the network can move.
PRIOR_FLOOR = 0.01
# Affinity weights (residual + AFFINITY_SOFTNESS)^−AFFINITY_POWER, scaled so the best is 1. A blend
# of references in different expressions ghosts: on the sample clip's woman the references' residuals
# to a held-out frame differ by 20–50 % (0.02–0.09 of the face's extent), and 1/residual² blended
# them about 40/30/20/10 % into a blur (sharpness ratio 0.38); the 8th power gives the nearest
# reference ~80 %. Below the softness (a fraction of the face's extent) residuals count as equal.
AFFINITY_SOFTNESS = 0.005
AFFINITY_POWER = 8.0
# How the references are resampled through the field. Bilinear averages 2×2 texels at every
# sub-pixel offset and blurs: on the sample clip's woman at 128², 12 reference-to-reference warps kept
# a median 0.61 of the sharpness of the frame warped onto with bilinear, 0.88 with bicubic, at the
# same masked RGB distance (docs/notes.md); 4 references × 4 channels cost 2.0 ms against 0.52 ms.
SAMPLING = "bicubic"


class WarpError(HeadcastError, ValueError):
    """Reference frames or meshes that cannot be warped; the message says what is wrong."""


@dataclass(frozen=True, eq=False)
class ReferenceFrames:
    """K frames of one target that the avatar is warped from, each with its fitted mesh.

    images: (K, S, S, 3) uint8 RGB face crops; masks: (K, S, S) uint8 foreground (255 = person);
    vertices_px: (K, 468, 3) float32 the fitted mesh in each crop's pixels (x, y down, depth smaller
    nearer); visible: (K, 468) float32 1 where the crop shows the vertex; kinds: (K,) what each
    frame covers ("frontal", "mouth open", …); frame_indices: (K,) where each came from in the
    enrolment's frames.
    """

    images: npt.NDArray[np.uint8]
    masks: npt.NDArray[np.uint8]
    vertices_px: npt.NDArray[np.float32]
    visible: npt.NDArray[np.float32]
    kinds: tuple[str, ...] = ()
    frame_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.images)
        size = self.images.shape[1] if self.images.ndim == 4 else -1
        expected: dict[str, tuple[npt.NDArray[np.generic], tuple[int, ...]]] = {
            "images": (self.images, (count, size, size, 3)),
            "masks": (self.masks, (count, size, size)),
            "vertices_px": (self.vertices_px, (count, NUM_VERTICES, 3)),
            "visible": (self.visible, (count, NUM_VERTICES)),
        }
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise WarpError(f"reference {name} has shape {array.shape}, expected {shape}")
        if count == 0:
            raise WarpError("no reference frames: the warp needs at least one")
        if not np.isfinite(self.vertices_px).all():
            raise WarpError("reference meshes contain NaN or infinity")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size_px(self) -> int:
        return int(self.images.shape[1])

    @classmethod
    def of(
        cls,
        images: npt.NDArray[np.uint8],
        masks: npt.NDArray[np.uint8],
        vertices_px: npt.ArrayLike,
        kinds: Sequence[str] = (),
        frame_indices: Sequence[int] = (),
        topology: WarpTopology | None = None,
    ) -> ReferenceFrames:
        """Return ReferenceFrames with each mesh's visibility measured in its own crop."""
        vertices = np.asarray(vertices_px, dtype=np.float32)
        topo = topology or warp_topology()
        size = (images.shape[1], images.shape[2])
        visible = np.stack([vertex_visibility(v, size, topo) for v in vertices]) if len(vertices) else vertices[:, :, 0]
        return cls(np.ascontiguousarray(images), np.ascontiguousarray(masks), vertices, visible.astype(np.float32),
                   tuple(kinds), tuple(int(i) for i in frame_indices))  # fmt: skip

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Return images (K, 3, S, S) in [−1, 1] and masks (K, 1, S, S) in [0, 1] on `device`."""
        images = torch.from_numpy(self.images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        masks = torch.from_numpy(self.masks).to(device)[:, None].float() / 255
        return images, masks


def affinities(driven_px: npt.ArrayLike, references: ReferenceFrames) -> npt.NDArray[np.float32]:
    """Return (K,) float32 affinity weights in (0, 1] of each reference to a driven mesh, 1 for the most alike:
    ((best residual + softness) / (residual + softness))^AFFINITY_POWER."""
    residuals = np.array([reference_affinity(driven_px, mesh) for mesh in references.vertices_px]) + AFFINITY_SOFTNESS
    return ((residuals.min() / residuals) ** AFFINITY_POWER).astype(np.float32)


def fields_cpu(
    driven_px: npt.ArrayLike, references: ReferenceFrames, size_px: int, topology: WarpTopology
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Return one driven frame's fields on the CPU: grid (K, S, S, 2) and validity (K, S, S) (face3d.warp)."""
    fields: list[WarpField] = warp_fields(
        driven_px, list(zip(references.vertices_px, references.visible, strict=True)), (size_px, size_px), topology
    )
    return np.stack([f.grid for f in fields]), np.stack([f.validity for f in fields])


def warp_input(images: Tensor, masks: Tensor, grid: Tensor, validity: Tensor, affinity: Tensor) -> Tensor:
    """Return G's warp input (B, 5·K, H, W): per reference its warped RGB, warped mask and blend prior.

    images: (B, K, 3, S, S) or (K, 3, S, S) references in [−1, 1]; masks: (B, K, 1, S, S) or
    (K, 1, S, S) in [0, 1]; grid: (B, K, H, W, 2) positions in reference pixels (centres at +0.5);
    validity: (B, K, H, W) in [0, 1]; affinity: (B, K) positive weights.
    """
    batch, count, height, width = validity.shape
    if images.dim() == 4:
        images = images.unsqueeze(0).expand(batch, -1, -1, -1, -1)
        masks = masks.unsqueeze(0).expand(batch, -1, -1, -1, -1)
    size = images.shape[-1]
    normalised = grid * (2.0 / size) - 1.0  # align_corners=False: the image spans [−1, 1] edge to edge
    source = torch.cat([images, masks], dim=2).flatten(0, 1)  # (B·K, 4, S, S)
    # Outside the reference crop (hair and shoulders moving in from its edge) "border" smears the edge
    # pixels into streaks; a mirror image continues the texture.
    sampled = functional.grid_sample(source.to(grid.dtype), normalised.flatten(0, 1), mode=SAMPLING,
                                     padding_mode="reflection", align_corners=False)  # fmt: skip
    # Bicubic overshoots at edges: keep RGB in [−1, 1] and the mask in [0, 1].
    sampled = sampled.view(batch, count, 4, height, width)
    sampled = torch.cat([sampled[:, :, :3].clamp(-1.0, 1.0), sampled[:, :, 3:].clamp(0.0, 1.0)], dim=2)
    prior = (validity + PRIOR_FLOOR) * affinity[:, :, None, None]
    prior = prior / prior.sum(dim=1, keepdim=True)
    return torch.cat([sampled, prior[:, :, None]], dim=2).flatten(1, 2)


# --- the same fields batched in torch -----------------------------------------------------------------------------


def _gaussian_kernel(sigma: float, device: torch.device) -> Tensor:
    """Return scipy.ndimage.gaussian_filter's 1-D kernel for σ (support int(truncate·σ + 0.5))."""
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def _similarities(driven: Tensor, reference: Tensor, weights: Tensor) -> Tensor:
    """Return (B, K, 2, 3) the weighted least-squares 2-D similarities mapping driven (B, 1, N, 2)
    onto reference (B, K, N, 2) positions: in complex numbers z_ref ≈ α·z_driven + β."""
    fallback = weights.sum(-1, keepdim=True) <= 0
    w = torch.where(fallback, torch.ones_like(weights), weights)
    w = w / w.sum(-1, keepdim=True)
    src = torch.complex(driven[..., 0].double(), driven[..., 1].double())
    dst = torch.complex(reference[..., 0].double(), reference[..., 1].double())
    wd = w.double()
    src_mean = (wd * src).sum(-1, keepdim=True)
    dst_mean = (wd * dst).sum(-1, keepdim=True)
    src_c, dst_c = src - src_mean, dst - dst_mean
    spread = (wd * src_c.abs() ** 2).sum(-1)
    alpha = (wd * dst_c * src_c.conj()).sum(-1) / spread.clamp(min=1e-12)
    beta = dst_mean[..., 0] - alpha * src_mean[..., 0]
    a, b = alpha.real, alpha.imag
    row0 = torch.stack([a, -b, beta.real], -1)
    row1 = torch.stack([b, a, beta.imag], -1)
    return torch.stack([row0, row1], -2).float()


def warp_fields_batch(
    driven_px: Tensor,
    reference_px: Tensor,
    reference_visible: Tensor,
    size_px: int,
    topology: WarpTopology,
    seam_px: float = SEAM_PX,
) -> tuple[Tensor, Tensor]:
    """Return grid (B, K, S, S, 2) and validity (B, K, S, S): face3d.warp.warp_fields for B driven
    meshes (B, 468, 3) against K references each ((B, K, 468, 3) meshes, (B, K, 468) visibility),
    on the device of `driven_px`."""
    device = driven_px.device
    batch = driven_px.shape[0]
    count = reference_px.shape[1]
    triangles = torch.from_numpy(topology.triangles.astype(np.int64)).to(device)
    raster = rasterise_batch(driven_px, triangles, (size_px, size_px))
    face = raster.mask  # (B, S, S)
    tri = raster.triangle_id.clamp(min=0)
    corners = triangles[tri]  # (B, S, S, 3) vertex ids
    attributes = torch.cat([reference_px[..., :2], reference_visible[..., None]], dim=-1).float()  # (B, K, N, 3)
    index = corners.reshape(batch, 1, -1, 1).expand(-1, count, -1, 3)
    values = torch.gather(attributes, 2, index).view(batch, count, size_px, size_px, 3, 3)  # vertex, attribute
    inside = (values * raster.barycentric[:, None, :, :, :, None]).sum(-2)  # (B, K, S, S, 3)
    inside = inside * face[:, None, :, :, None]
    mouth = torch.from_numpy(topology.mouth).to(device)[tri] & face

    coords = torch.arange(size_px, device=device, dtype=torch.float32) + 0.5
    xs, ys = coords.view(1, 1, 1, -1), coords.view(1, 1, -1, 1)
    low, high = driven_px[..., :2].amin(1), driven_px[..., :2].amax(1)  # (B, 2)
    centre, half = (low + high) / 2, ((high - low) / 2).clamp(min=1e-6)
    rx = (xs - centre[:, 0].view(-1, 1, 1, 1)) / half[:, 0].view(-1, 1, 1, 1)
    ry = (ys - centre[:, 1].view(-1, 1, 1, 1)) / half[:, 1].view(-1, 1, 1, 1)
    s = ((torch.sqrt(rx**2 + ry**2) - FADE_INNER) / (FADE_OUTER - FADE_INNER)).clamp(0, 1)
    fade = 1.0 - s * s * (3.0 - 2.0 * s)  # (B, 1, S, S)

    keep = face.float()[:, None]
    if seam_px > 0:
        kernel = _gaussian_kernel(seam_px, device)
        radius = (len(kernel) - 1) // 2
        blurred = functional.conv2d(keep, kernel.view(1, 1, 1, -1), padding=(0, radius))
        blurred = functional.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        keep = (2.0 * blurred - 1.0).clamp(0, 1) * keep
    rigid_share = (1.0 - keep) * fade
    affine = _similarities(driven_px[:, None, :, :2], reference_px[..., :2], reference_visible)  # (B, K, 2, 3)
    a, b, c = (affine[:, :, 0, i, None, None] for i in range(3))
    d, e, f = (affine[:, :, 1, i, None, None] for i in range(3))
    gx = xs + keep * (inside[..., 0] - xs) + rigid_share * ((a - 1) * xs + b * ys + c)
    gy = ys + keep * (inside[..., 1] - ys) + rigid_share * (d * xs + (e - 1) * ys + f)
    validity = keep * inside[..., 2] * (~mouth).float()[:, None]
    return torch.stack([gx, gy], dim=-1), validity


def warp_sequence(
    vertices_px: npt.ArrayLike,
    references: ReferenceFrames,
    size_px: int,
    topology: WarpTopology,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Return G's warp input (T, 5·K, S, S) for T driven meshes (T, 468, 3), fields on the CPU."""
    meshes = np.asarray(vertices_px, dtype=np.float64)
    if meshes.ndim != 3 or meshes.shape[1:] != (NUM_VERTICES, 3):
        raise WarpError(f"driven meshes have shape (T, {NUM_VERTICES}, 3) in pixels, got {meshes.shape}")
    grids, validities, affinity = [], [], []
    for mesh in meshes:
        grid, validity = fields_cpu(mesh, references, size_px, topology)
        grids.append(grid)
        validities.append(validity)
        affinity.append(affinities(mesh, references))
    images, masks = references.tensors(device)
    return warp_input(
        images,
        masks,
        torch.from_numpy(np.stack(grids)).to(device),
        torch.from_numpy(np.stack(validities)).to(device),
        torch.from_numpy(np.stack(affinity)).to(device),
    )


def prior_blend(warped: Tensor) -> Tensor:
    """Return (N, 3, H, W) in [−1, 1]: the warped references blended by their priors alone (what an
    untrained G shows), from warp inputs (N, 5·K, H, W)."""
    references = warped.view(warped.shape[0], -1, CHANNELS_PER_REFERENCE, *warped.shape[-2:])
    return (references[:, :, :3] * references[:, :, 4:5]).sum(1)
