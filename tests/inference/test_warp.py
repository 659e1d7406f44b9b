"""The warp in torch: the batched fields equal face3d's CPU fields, the warp input's priors are a
blend, and an untrained warp generator shows exactly that blend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.warp import WarpTopology, warp_topology
from inference.networks import Generator, GeneratorConfig
from inference.warp import (
    CHANNELS_PER_REFERENCE,
    ReferenceFrames,
    WarpError,
    affinities,
    fields_cpu,
    prior_blend,
    warp_fields_batch,
    warp_sequence,
)
from training.synthetic import SyntheticClip, synthetic_clip

SIZE = 64
PICKS = [0, 9, 18, 27]


@pytest.fixture(scope="module")
def topology() -> WarpTopology:
    return warp_topology()


@pytest.fixture(scope="module")
def clip() -> SyntheticClip:
    return synthetic_clip(seed=5, frames=36, size_px=SIZE)


@pytest.fixture(scope="module")
def references(clip: SyntheticClip, topology: WarpTopology) -> ReferenceFrames:
    return ReferenceFrames.of(clip.frames[PICKS], clip.masks[PICKS], clip.vertices_px[PICKS],
                              ("frontal", "mouth open", "left turn", "right turn"), PICKS, topology)  # fmt: skip


def test_batched_torch_fields_equal_the_cpu_fields(
    clip: SyntheticClip, references: ReferenceFrames, topology: WarpTopology
) -> None:
    driven = [4, 13, 31]
    batch = len(driven)
    grid, validity = warp_fields_batch(
        torch.from_numpy(clip.vertices_px[driven]),
        torch.from_numpy(references.vertices_px)[None].expand(batch, -1, -1, -1),
        torch.from_numpy(references.visible)[None].expand(batch, -1, -1),
        SIZE,
        topology,
    )
    assert grid.shape == (batch, len(references), SIZE, SIZE, 2) and validity.shape == grid.shape[:-1]
    for b, t in enumerate(driven):
        cpu_grid, cpu_validity = fields_cpu(clip.vertices_px[t], references, SIZE, topology)
        # Same coverage (exact fixed point in both rasterisers); the values differ by float32 rounding
        # of positions up to ~100 px and of the seam's Gaussian.
        np.testing.assert_allclose(grid[b].numpy(), cpu_grid, atol=5e-3)
        np.testing.assert_allclose(validity[b].numpy(), cpu_validity, atol=1e-4)


def test_the_warp_input_holds_warped_frames_and_priors_that_sum_to_one(
    clip: SyntheticClip, references: ReferenceFrames, topology: WarpTopology
) -> None:
    warped = warp_sequence(clip.vertices_px[[3, 20]], references, SIZE, topology)
    assert warped.shape == (2, CHANNELS_PER_REFERENCE * len(references), SIZE, SIZE)
    per_reference = warped.view(2, len(references), CHANNELS_PER_REFERENCE, SIZE, SIZE)
    assert per_reference[:, :, :3].min() >= -1 and per_reference[:, :, :3].max() <= 1
    assert per_reference[:, :, 3].min() >= 0 and per_reference[:, :, 3].max() <= 1
    torch.testing.assert_close(per_reference[:, :, 4].sum(1), torch.ones(2, SIZE, SIZE))
    # A driven frame that *is* a reference leans on that reference: it is the most alike.
    weights = affinities(clip.vertices_px[PICKS[1]], references)
    assert int(np.argmax(weights)) == 1


def test_an_untrained_warp_generator_shows_the_prior_blend(
    clip: SyntheticClip, references: ReferenceFrames, topology: WarpTopology
) -> None:
    config = GeneratorConfig(identity_dim=16, ngf=8, max_channels=32, n_downsampling=2, n_blocks=1,
                             warp_references=len(references))  # fmt: skip
    torch.manual_seed(0)
    generator = Generator(config).eval()
    generator.convert_adain_to_instance_norm(torch.randn(16))
    warped = warp_sequence(clip.vertices_px[[7]], references, SIZE, topology)
    nmfc = torch.from_numpy(np.concatenate([clip.nmfc[7]] * 3, axis=-1)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = generator(torch.cat([nmfc, warped], 1), torch.zeros(1, 6, SIZE, SIZE))
    torch.testing.assert_close(out.frame, prior_blend(warped).clamp(-1, 1), atol=1e-5, rtol=0)
    masks = warped.view(1, len(references), CHANNELS_PER_REFERENCE, SIZE, SIZE)
    blended = (masks[:, :, 3:4] * masks[:, :, 4:5]).sum(1)
    torch.testing.assert_close(out.mask, blended.clamp(1e-4, 1 - 1e-4), atol=1e-5, rtol=0)
    # And the blend shows the person: inside the driven face it is near the real frame.
    real = torch.from_numpy(clip.frames[7]).permute(2, 0, 1).float() / 127.5 - 1
    face = torch.from_numpy(clip.masks[7] > 0)
    assert (out.frame[0] - real).abs().mean(0)[face].mean() < 0.1


def test_reference_frames_are_checked_on_arrival(clip: SyntheticClip) -> None:
    with pytest.raises(WarpError, match="vertices_px has shape"):
        ReferenceFrames(clip.frames[:2], clip.masks[:2], clip.vertices_px[:3], np.ones((2, 468), np.float32))
    with pytest.raises(WarpError, match="at least one"):
        ReferenceFrames(clip.frames[:0], clip.masks[:0], clip.vertices_px[:0], np.ones((0, 468), np.float32))
    with pytest.raises(WarpError, match="driven meshes"):
        warp_sequence(np.zeros((2, 10, 3)), ReferenceFrames.of(clip.frames[:1], clip.masks[:1], clip.vertices_px[:1]),
                      SIZE, warp_topology())  # fmt: skip
