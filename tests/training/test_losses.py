"""Hinge GAN losses, feature matching, mask L1, embedding matching (eq. 8) and the optional VGG perceptual loss."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from training.losses import (
    PerceptualLoss,
    VGG19Features,
    embedding_matching_loss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    load_vgg19_features,
    mask_loss,
)


def scores(value: float) -> list[torch.Tensor]:
    """Return two scales of constant score maps."""
    return [torch.full((2, 1, 4, 4), value), torch.full((2, 1, 2, 2), value)]


def test_hinge_discriminator_loss_is_zero_only_beyond_the_margins() -> None:
    assert float(hinge_discriminator_loss(scores(5.0), scores(-5.0))) == 0.0
    # at the margins exactly: still zero
    assert float(hinge_discriminator_loss(scores(1.0), scores(-1.0))) == 0.0
    # undecided D: max(0, 1 − 0) + max(0, 1 + 0) = 2
    assert float(hinge_discriminator_loss(scores(0.0), scores(0.0))) == pytest.approx(2.0)
    # only the fake side wrong: 0 + (1 + 0.5)
    assert float(hinge_discriminator_loss(scores(3.0), scores(0.5))) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="as many"):
        hinge_discriminator_loss(scores(0.0), scores(0.0)[:1])


def test_hinge_generator_loss_falls_as_fake_scores_rise() -> None:
    values = [float(hinge_generator_loss(scores(s))) for s in (-2.0, -0.5, 0.0, 1.0, 3.0)]
    assert values == sorted(values, reverse=True)
    assert values[2] == 0.0 and values[-1] == pytest.approx(-3.0)


def test_generator_loss_gradient_pushes_fake_scores_up() -> None:
    fake = torch.zeros(1, 1, 3, 3, requires_grad=True)
    hinge_generator_loss([fake]).backward()
    assert fake.grad is not None and bool((fake.grad < 0).all())


def test_feature_matching_is_l1_and_trains_only_the_fake_side() -> None:
    real = [[torch.ones(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 3, 2, 2, requires_grad=True)]]
    fake = [[torch.ones(1, 2, 4, 4), torch.full((1, 3, 2, 2), 0.5, requires_grad=True)]]
    assert float(feature_matching_loss(real, [[f.detach() for f in real[0]]])) == 0.0
    loss = feature_matching_loss(real, fake)
    assert float(loss.detach()) == pytest.approx((0.0 + 0.5) / 2)
    loss.backward()
    assert real[0][1].grad is None and fake[0][1].grad is not None


def test_mask_loss_is_mean_absolute_difference() -> None:
    target = torch.zeros(1, 1, 2, 2)
    predicted = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    assert float(mask_loss(predicted, target)) == pytest.approx(0.5)


def test_embedding_matching_is_one_minus_cosine() -> None:
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert float(embedding_matching_loss(e[:1], 5 * e[:1])) == pytest.approx(0.0, abs=1e-6)
    assert float(embedding_matching_loss(e[:1], e[1:2])) == pytest.approx(1.0)
    assert float(embedding_matching_loss(e[:1], -e[2:3])) == pytest.approx(2.0)
    assert float(embedding_matching_loss(e[:2], e[1:])) == pytest.approx((1.0 + 1.0) / 2)


def test_without_vgg_weights_the_perceptual_loss_is_off_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="training.losses"):
        loss = PerceptualLoss(None)
    assert not loss.enabled
    assert any("VGG perceptual loss is off" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    value = loss(torch.rand(1, 3, 16, 16), -torch.rand(1, 3, 16, 16))
    assert value.shape == () and float(value) == 0.0


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised VGG19 saved with torchvision's key names (plus a classifier key to ignore)."""
    torch.manual_seed(0)
    state = VGG19Features().state_dict()
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


def test_vgg_weights_from_a_file_give_a_positive_loss_for_different_images(vgg_file: Path) -> None:
    loss = PerceptualLoss(vgg_file)
    assert loss.enabled
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    b = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    assert float(loss(a, a)) == 0.0
    assert float(loss(a, b)) > 0.0
    assert not any(p.requires_grad for p in loss.parameters())
    generated = a.clone().requires_grad_(True)
    loss(generated, b).backward()
    assert generated.grad is not None and float(generated.grad.abs().sum()) > 0


def test_vgg_loading_refuses_missing_and_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vgg19_features(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_vgg19_features(tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks VGG19 layers"):
        load_vgg19_features(tmp_path / "partial.pth")
