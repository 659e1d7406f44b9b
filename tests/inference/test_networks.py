"""The served networks: G of eq. 5 with AdaIN (eq. 6) and its conversion (§3.4), E and eq. 4, the size configs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from inference.networks import (
    AdaIN,
    EmbedderConfig,
    Generator,
    GeneratorConfig,
    IdentityEmbedder,
    ModelConfig,
    TargetInstanceNorm,
    load_model_config,
    mean_identity,
)

# Small enough for two shared cores: 32x32 frames, 8 channels, two downsamplings, one residual block.
SMALL_G = GeneratorConfig(identity_dim=16, ngf=8, max_channels=32, n_downsampling=2, n_blocks=1)
SMALL_E = EmbedderConfig(identity_dim=16, input_px=112, width=0.125, blocks=(1, 1, 1), dropout=0.0)
SIZE = 32


def inputs(batch: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Return (nmfc (B, 9, 32, 32) in [0, 1], previous (B, 6, 32, 32) in [−1, 1], unit ê (B, 16))."""
    generator = torch.Generator().manual_seed(seed)
    nmfc = torch.rand(batch, 9, SIZE, SIZE, generator=generator)
    previous = torch.rand(batch, 6, SIZE, SIZE, generator=generator) * 2 - 1
    identity = torch.nn.functional.normalize(torch.randn(batch, 16, generator=generator), dim=1)
    return nmfc, previous, identity


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(SMALL_G).eval()


def test_both_sizes_load_with_the_paper_sized_base() -> None:
    tiny, base = load_model_config("tiny"), load_model_config("base")
    assert (tiny.size_px, base.size_px) == (128, 256)
    assert (base.generator.ngf, base.generator.n_downsampling, base.generator.n_blocks) == (64, 3, 9)
    assert base.embedder.blocks == (5, 10, 5) and base.embedder.width == 1.0
    assert tiny.generator.ngf <= 32
    assert tiny.identity_dim == tiny.embedder.identity_dim


def test_an_unknown_size_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model size 'huge'.*base, tiny"):
        load_model_config("huge")


def test_generator_and_embedder_must_share_the_identity_length() -> None:
    with pytest.raises(ValueError, match="identity_dim"):
        ModelConfig(size="x", size_px=64, generator=SMALL_G, embedder=SMALL_E.model_copy(update={"identity_dim": 8}))


def test_generator_returns_a_frame_in_tanh_range_and_a_mask_in_0_1() -> None:
    nmfc, previous, identity = inputs(2)
    with torch.no_grad():
        out = small_generator()(nmfc, previous, identity)
    assert out.frame.shape == (2, 3, SIZE, SIZE) and out.mask.shape == (2, 1, SIZE, SIZE)
    assert out.frame.dtype == out.mask.dtype == torch.float32
    assert out.frame.min() >= -1 and out.frame.max() <= 1
    assert out.mask.min() >= 0 and out.mask.max() <= 1


def test_the_tiny_size_renders_a_128_pixel_frame() -> None:
    config = load_model_config("tiny")
    torch.manual_seed(0)
    generator = Generator(config.generator).eval()
    size = config.size_px
    with torch.no_grad():
        out = generator(
            torch.rand(1, config.generator.condition_channels, size, size),
            torch.zeros(1, 6, size, size),
            torch.randn(1, config.identity_dim),
        )
    assert out.frame.shape == (1, 3, size, size)


def test_generator_rejects_wrong_channels_sizes_and_missing_identity() -> None:
    nmfc, previous, identity = inputs(1)
    generator = small_generator()
    with pytest.raises(ValueError, match="channels"):
        generator(nmfc[:, :6], previous, identity)
    with pytest.raises(ValueError, match="divisible by 4"):
        generator(nmfc[..., :30, :30], previous[..., :30, :30], identity)
    with pytest.raises(ValueError, match="needs the identity"):
        generator(nmfc, previous)


def test_adain_computes_eq_6() -> None:
    torch.manual_seed(1)
    norm = AdaIN(channels=4, identity_dim=16)
    h = torch.randn(2, 4, 5, 6) * 3 + 1
    identity = torch.randn(2, 16)
    gamma = identity @ norm.to_gamma.weight.T + norm.to_gamma.bias
    beta = identity @ norm.to_beta.weight.T + norm.to_beta.bias
    mu = h.mean(dim=(2, 3), keepdim=True)
    sigma = (h.var(dim=(2, 3), unbiased=False, keepdim=True) + norm.eps).sqrt()
    expected = gamma[:, :, None, None] * (h - mu) / sigma + beta[:, :, None, None]
    torch.testing.assert_close(norm(h, identity), expected, atol=1e-5, rtol=1e-5)


def test_adain_starts_as_plain_instance_norm_for_any_identity() -> None:
    torch.manual_seed(2)
    norm = AdaIN(channels=8, identity_dim=16)
    gamma, beta = norm.modulation(torch.nn.functional.normalize(torch.randn(3, 16), dim=1))
    # weights ~ N(0, 0.02²) on a unit vector: |P ê − offset| is a few hundredths
    assert (gamma - 1).abs().max() < 0.15 and beta.abs().max() < 0.15


def test_the_identity_changes_the_frame() -> None:
    nmfc, previous, identity = inputs(1)
    generator = small_generator()
    for adain in (m for m in generator.modules() if isinstance(m, AdaIN)):
        # Trained projections are far from their near-constant initialisation.
        torch.nn.init.normal_(adain.to_gamma.weight, std=0.5)
        torch.nn.init.normal_(adain.to_beta.weight, std=0.5)
    with torch.no_grad():
        first = generator(nmfc, previous, identity).frame
        second = generator(nmfc, previous, -identity).frame
    assert (first - second).abs().mean() > 1e-2


@pytest.mark.parametrize("batch", [1, 2])
def test_conversion_to_instance_norm_is_exact(batch: int) -> None:
    nmfc, previous, identities = inputs(batch)
    identity = identities[0]
    generator = small_generator()
    for adain in (m for m in generator.modules() if isinstance(m, AdaIN)):
        torch.nn.init.normal_(adain.to_gamma.weight, std=0.3)
    with torch.no_grad():
        before = generator(nmfc, previous, identity.expand(batch, -1))
        replaced = generator.convert_adain_to_instance_norm(identity)
        after = generator(nmfc, previous)
    # stem + downsamplings per encoder, two per residual block, one per upsampling
    assert replaced == 2 * (1 + SMALL_G.n_downsampling) + 2 * SMALL_G.n_blocks + SMALL_G.n_downsampling
    assert not any(isinstance(m, AdaIN) for m in generator.modules())
    # Same kernel; only the projection's matrix-vector vs matrix-matrix rounding differs (float32 ulps).
    torch.testing.assert_close(after.frame, before.frame, atol=1e-5, rtol=0)
    torch.testing.assert_close(after.mask, before.mask, atol=1e-5, rtol=0)


def test_converted_instance_norms_hold_the_projected_identity() -> None:
    generator = small_generator()
    identity = inputs(1)[2][0]
    stem_adain = generator.nmfc_encoder.stem.norm
    assert isinstance(stem_adain, AdaIN)
    gamma, beta = stem_adain.modulation(identity)
    generator.convert_adain_to_instance_norm(identity)
    norm = generator.nmfc_encoder.stem.norm
    assert isinstance(norm, TargetInstanceNorm) and norm.affine
    torch.testing.assert_close(norm.weight.data, gamma.detach())
    torch.testing.assert_close(norm.bias.data, beta.detach())
    assert norm.weight.requires_grad  # fine-tuning trains them
    with pytest.raises(ValueError, match="takes no identity"):
        generator(*inputs(1)[:2], identity[None])
    with pytest.raises(ValueError, match="already converted"):
        generator.convert_adain_to_instance_norm(identity)


def test_same_seed_same_generator_and_frames() -> None:
    first, second = small_generator(seed=7), small_generator(seed=7)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(first(*inputs(1)).frame, second(*inputs(1)).frame)
    other = small_generator(seed=8)
    assert not torch.equal(
        other.state_dict()["decoder.frame_head.1.weight"], first.state_dict()["decoder.frame_head.1.weight"]
    )


def small_embedder(seed: int = 0) -> IdentityEmbedder:
    torch.manual_seed(seed)
    return IdentityEmbedder(SMALL_E).eval()


def test_embedder_returns_unit_vectors_for_any_frame_size() -> None:
    embedder = small_embedder()
    with torch.no_grad():
        embedding = embedder(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert embedding.shape == (2, 16) and embedding.dtype == torch.float32
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


def test_embedder_trains_on_a_single_frame() -> None:
    embedder = small_embedder().train()
    embedder(torch.rand(1, 3, 112, 112)).sum().backward()
    assert embedder.last_linear.weight.grad is not None


def test_mean_identity_is_eq_4() -> None:
    embedder = small_embedder()
    frames = torch.rand(2, 2, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        per_frame = embedder(frames.flatten(0, 1))
        single = mean_identity(embedder, frames[0], batch_size=1)
        both = mean_identity(embedder, frames, batch_size=4)
    torch.testing.assert_close(single, per_frame[:2].mean(0), atol=1e-6, rtol=0)
    assert both.shape == (2, 16)
    torch.testing.assert_close(both, per_frame.view(2, 2, 16).mean(1), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="K >= 1"):
        mean_identity(embedder, frames[0, :0])


def test_the_base_embedder_has_facenet_widths() -> None:
    embedder = IdentityEmbedder(load_model_config("base").embedder)
    assert embedder.mixed_6a.out_channels == 896 and embedder.mixed_7a.out_channels == 1792
    assert len(embedder.repeat_1) == 5 and len(embedder.repeat_2) == 10 and len(embedder.repeat_3) == 5
