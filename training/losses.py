"""The training objectives of §3.3: hinge GAN losses, feature matching, mask L1, embedding matching (eq. 8), VGG.

Discriminator outputs are lists with one score map per scale; every loss is the mean over its
elements and then over scales, so adding a scale does not change a loss's magnitude.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional

logger = logging.getLogger(__name__)

# torchvision's vgg19().features: convolution widths, "M" for max pooling; layer indices follow it.
VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
# pix2pixHD's VGGLoss: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (features index after the ReLU)
# with weights growing with depth.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_SLICE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hinge_discriminator_loss(real_scores: list[Tensor], fake_scores: list[Tensor]) -> Tensor:
    """Return the hinge D loss, mean over scales of E[max(0, 1 − D(real))] + E[max(0, 1 + D(fake))], a 0-d tensor."""
    if len(real_scores) != len(fake_scores) or not real_scores:
        raise ValueError(f"need as many real as fake score maps (≥ 1), got {len(real_scores)} and {len(fake_scores)}")
    terms = [
        functional.relu(1 - real).mean() + functional.relu(1 + fake).mean()
        for real, fake in zip(real_scores, fake_scores, strict=True)
    ]
    return torch.stack(terms).mean()


def hinge_generator_loss(fake_scores: list[Tensor]) -> Tensor:
    """Return the hinge G loss, mean over scales of −E[D(fake)], a 0-d tensor (lower as fakes score higher)."""
    if not fake_scores:
        raise ValueError("need at least one fake score map")
    return torch.stack([-fake.mean() for fake in fake_scores]).mean()


def feature_matching_loss(real_features: list[list[Tensor]], fake_features: list[list[Tensor]]) -> Tensor:
    """Return the mean L1 distance between D's intermediate features of real and fake inputs, a 0-d tensor.

    Real features are detached: feature matching trains G only.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError("real and fake features must have the same (non-zero) number of scales")
    per_scale = []
    for real_layers, fake_layers in zip(real_features, fake_features, strict=True):
        layers = [functional.l1_loss(fake, real.detach()) for real, fake in zip(real_layers, fake_layers, strict=True)]
        per_scale.append(torch.stack(layers).mean())
    return torch.stack(per_scale).mean()


def mask_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Return L_mask = mean |m − m̃| over (B, 1, H, W) masks in [0, 1], a 0-d tensor."""
    return functional.l1_loss(predicted, target)


def embedding_matching_loss(identity: Tensor, identity_rows: Tensor) -> Tensor:
    """Return eq. 8's L_EMB = mean over the batch of 1 − cos(ê_i, W_i), for ê (B, D) and D_I's rows W_i (B, D)."""
    return (1 - functional.cosine_similarity(identity, identity_rows, dim=1)).mean()


class VGG19Features(nn.Module):
    """The convolutional part of VGG19 with torchvision's layer indices (`features.<i>.weight`), up to relu5_1."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for entry in VGG19_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(entry, int)
                layers += [nn.Conv2d(channels, entry, 3, padding=1), nn.ReLU(inplace=False)]
                channels = entry
            if len(layers) >= VGG_SLICE_ENDS[-1]:
                break
        self.features = nn.Sequential(*layers[: VGG_SLICE_ENDS[-1]])

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the activations relu1_1 … relu5_1 for ImageNet-normalised images (B, 3, H, W)."""
        outputs = []
        start = 0
        for end in VGG_SLICE_ENDS:
            for index in range(start, end):
                x = self.features[index](x)
            outputs.append(x)
            start = end
        return outputs


def load_vgg19_features(path: str | Path) -> VGG19Features:
    """Return VGG19 features (eval mode, frozen) loaded from a torchvision-style state-dict file (.pth).

    The file may hold the whole classifier too (`classifier.*` keys are ignored); FileNotFoundError
    or ValueError say what is wrong with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights {path} not found: give the path of torchvision's vgg19 state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path} is not a readable torch state dict ({error})") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of VGG19 weights")
    network = VGG19Features()
    wanted = network.state_dict()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise ValueError(f"{path} lacks VGG19 layers {', '.join(missing[:4])}…: is it torchvision's vgg19 state dict?")
    wrong = [key for key, value in wanted.items() if tuple(state[key].shape) != tuple(value.shape)]
    if wrong:
        raise ValueError(f"{path}: {', '.join(wrong[:4])} have the wrong shapes for VGG19 (VGG16 weights?)")
    network.load_state_dict({key: state[key] for key in wanted})
    network.eval()
    network.requires_grad_(False)
    return network


class PerceptualLoss(nn.Module):
    """L_VGG: weighted L1 between VGG19 activations of generated and real frames (pix2pixHD's VGGLoss).

    No pretrained VGG ships offline, so without `weights_path` the loss is off: a warning is logged
    once and `forward` returns 0. Check `enabled` before weighting it into a loss.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.vgg: VGG19Features | None = None
        if weights_path is None:
            logger.warning(
                "VGG perceptual loss is off: no VGG19 weights given (pass the path of torchvision's vgg19 state dict)"
            )
        else:
            self.vgg = load_vgg19_features(weights_path)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def enabled(self) -> bool:
        """Return whether VGG19 weights were loaded (otherwise the loss is always 0)."""
        return self.vgg is not None

    def _normalise(self, images: Tensor) -> Tensor:
        """Return images in [−1, 1] mapped to [0, 1] and standardised with ImageNet's mean and std."""
        return ((images + 1) / 2 - self.mean) / self.std

    def forward(self, generated: Tensor, real: Tensor) -> Tensor:
        """Return Σ_l w_l · mean |φ_l(generated) − φ_l(real)|, a 0-d tensor, for (B, 3, H, W) frames in [−1, 1]."""
        if self.vgg is None:
            return generated.new_zeros(())
        fake_features = self.vgg(self._normalise(generated))
        with torch.no_grad():
            real_features = self.vgg(self._normalise(real))
        terms = [
            weight * functional.l1_loss(fake, target)
            for weight, fake, target in zip(VGG_SLICE_WEIGHTS, fake_features, real_features, strict=True)
        ]
        return torch.stack(terms).sum()
