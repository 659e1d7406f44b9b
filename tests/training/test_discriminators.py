"""D_I with eq. 7's projection head, D_M, D_D with its temporal scales, and their configs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from training.discriminators import (
    DiscriminatorsConfig,
    DynamicsDiscriminator,
    ImageDiscriminator,
    MouthDiscriminator,
    PatchGANConfig,
    load_discriminator_config,
    temporal_indices,
)

SMALL = DiscriminatorsConfig(
    identity_dim=8,
    image=PatchGANConfig(ndf=4, n_layers=2, scales=2),
    mouth=PatchGANConfig(ndf=4, n_layers=2, scales=1),
    mouth_px=16,
    dynamics=PatchGANConfig(ndf=4, n_layers=2, scales=1),
    dynamics_frames=3,
    temporal_steps=(1, 2, 4),
)
SIZE = 32


def image_inputs(batch: int = 2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 2 - 1, torch.rand(
        batch, 3, SIZE, SIZE, generator=generator
    )


def image_discriminator(num_identities: int = 3, seed: int = 0) -> ImageDiscriminator:
    torch.manual_seed(seed)
    # eval: spectral norm then reuses its power-iteration vectors, so repeated calls are comparable
    return ImageDiscriminator(SMALL, num_identities).eval()


def test_sizes_load_and_dynamics_channels_are_3k_plus_2k_minus_2() -> None:
    for size in ("tiny", "base"):
        config = load_discriminator_config(size)
        assert config.temporal_steps == (1, 2, 4)
        assert config.dynamics_channels == 3 * config.dynamics_frames + 2 * (config.dynamics_frames - 1)
    assert SMALL.dynamics_channels == 13


def test_image_discriminator_returns_scores_and_features_per_scale() -> None:
    out = image_discriminator()(*image_inputs(), torch.tensor([0, 2]))
    assert len(out.scores) == len(out.features) == SMALL.image.scales
    assert all(score.shape[:2] == (2, 1) for score in out.scores)
    assert all(len(features) == SMALL.image.n_layers + 1 for features in out.features)
    # the second scale sees the input pooled by two
    assert out.scores[1].shape[-1] < out.scores[0].shape[-1]


def test_projection_score_is_eq_7_by_hand() -> None:
    discriminator = image_discriminator()
    projection = discriminator.projection
    with torch.no_grad():
        projection.shared.normal_()
        projection.bias.fill_(0.7)
    frame, nmfc = image_inputs()
    index = torch.tensor([2, 0])
    with torch.no_grad():
        out = discriminator(frame, nmfc, index)
        v = discriminator.body.run(torch.cat((frame, nmfc), 1))[0][-1]  # (B, D, h, w)
    W, w0, b = projection.identities.weight.detach(), projection.shared.detach(), projection.bias.detach()
    for sample in range(2):
        direction = W[index[sample]] + w0
        for y, x in [(0, 0), (3, 4), (v.shape[2] - 1, v.shape[3] - 1)]:
            expected = float(sum(v[sample, d, y, x] * direction[d] for d in range(SMALL.identity_dim)) + b)
            assert float(out.scores[0][sample, 0, y, x]) == pytest.approx(expected, abs=1e-5)


def test_the_identity_row_changes_the_score() -> None:
    discriminator = image_discriminator()
    frame, nmfc = image_inputs(1)
    with torch.no_grad():
        a = discriminator(frame, nmfc, torch.tensor([0])).scores[0]
        b = discriminator(frame, nmfc, torch.tensor([1])).scores[0]
    assert not torch.allclose(a, b)


def test_single_identity_for_fine_tuning_keeps_w0_and_b() -> None:
    discriminator = image_discriminator()
    with torch.no_grad():
        discriminator.projection.shared.normal_()
    shared = discriminator.projection.shared.detach().clone()
    identity = torch.nn.functional.normalize(torch.randn(SMALL.identity_dim), dim=0)
    frame, nmfc = image_inputs(1)
    with pytest.raises(ValueError, match="identity_index"):
        discriminator(frame, nmfc)
    discriminator.use_single_identity(identity)
    assert discriminator.num_identities == 1
    torch.testing.assert_close(discriminator.identity_rows(torch.tensor([0]))[0], identity)
    torch.testing.assert_close(discriminator.projection.shared.detach(), shared)
    with torch.no_grad():
        score = discriminator(frame, nmfc).scores[0]
        v = discriminator.body.run(torch.cat((frame, nmfc), 1))[0][-1]
    expected = torch.einsum("bdhw,d->bhw", v, identity + shared).unsqueeze(1) + discriminator.projection.bias
    torch.testing.assert_close(score, expected, atol=1e-5, rtol=1e-5)
    assert discriminator.projection.identities.weight.requires_grad


def test_mouth_discriminator_on_crops() -> None:
    out = MouthDiscriminator(SMALL)(torch.rand(2, 3, SMALL.mouth_px, SMALL.mouth_px))
    assert len(out.scores) == 1 and out.scores[0].shape[:2] == (2, 1)


def test_temporal_indices_subsample_by_the_step() -> None:
    assert temporal_indices(9, 3, 1) == [6, 7, 8]
    assert temporal_indices(9, 3, 2) == [4, 6, 8]
    assert temporal_indices(9, 3, 4) == [0, 4, 8]
    with pytest.raises(ValueError, match="need a sequence of 9"):
        temporal_indices(8, 3, 4)


def test_dynamics_discriminator_sees_frames_and_flows_at_three_temporal_scales() -> None:
    torch.manual_seed(0)
    discriminator = DynamicsDiscriminator(SMALL).eval()
    assert discriminator.sequence_length == 9
    first_conv = next(m for m in discriminator.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3 * 3 + 2 * 2
    sequence = torch.rand(1, 9, 3, SIZE, SIZE)
    flows = [torch.zeros(1, 2, 2, SIZE, SIZE) for _ in range(3)]
    outputs = discriminator(sequence, flows)
    assert len(outputs) == 3 and all(o.scores[0].shape[:2] == (1, 1) for o in outputs)
    # each scale sees its own frames: changing frame 0 only matters to the step-4 scale
    changed = sequence.clone()
    changed[:, 0] = 0
    with torch.no_grad():
        again = discriminator(changed, flows)
    assert torch.equal(again[0].scores[0], outputs[0].scores[0].detach())
    assert not torch.equal(again[2].scores[0], outputs[2].scores[0].detach())
    with pytest.raises(ValueError, match="one per temporal scale"):
        discriminator(sequence, flows[:2])


def test_spectral_norm_is_on_every_convolution_unless_switched_off() -> None:
    with_sn = image_discriminator()
    convs = [m for m in with_sn.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    without = ImageDiscriminator(SMALL.model_copy(update={"spectral_norm": False}), 3)
    assert not any(parametrize.is_parametrized(m) for m in without.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.InstanceNorm2d) for m in without.modules())


def test_same_seed_same_discriminator_and_scores() -> None:
    first, second = image_discriminator(seed=5), image_discriminator(seed=5)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    index = torch.tensor([1, 1])
    assert torch.equal(first(*image_inputs(), index).scores[1], second(*image_inputs(), index).scores[1])
