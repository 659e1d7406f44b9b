"""Identity-conditioned normalisation: AdaIN of eq. 6 and the instance norm it becomes for one target (§3.4).

Both layers are called as `norm(h, identity)` so that a network can hold either; the converted layer
ignores `identity` because the target's ê is baked into its affine parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

INSTANCE_NORM_EPS = 1e-5


class AdaIN(nn.Module):
    """Adaptive instance normalisation, eq. 6: `(P_γ ê) ⊙ (h − μ(h)) / σ(h) + (P_β ê)`.

    μ and σ are per sample and channel over the spatial positions. P_γ and P_β are affine
    projections of ê (a matrix and an offset, i.e. a matrix acting on [ê; 1]): the offset of P_γ
    starts at 1 and its matrix near 0, so γ ≈ 1 for any identity at initialisation. A purely linear
    P_γ applied to a unit-norm ê would start γ near 0 and silence every layer.
    """

    def __init__(self, channels: int, identity_dim: int, eps: float = INSTANCE_NORM_EPS) -> None:
        super().__init__()
        self.channels = channels
        self.identity_dim = identity_dim
        self.eps = eps
        self.to_gamma = nn.Linear(identity_dim, channels)
        self.to_beta = nn.Linear(identity_dim, channels)
        nn.init.normal_(self.to_gamma.weight, std=0.02)
        nn.init.ones_(self.to_gamma.bias)
        nn.init.normal_(self.to_beta.weight, std=0.02)
        nn.init.zeros_(self.to_beta.bias)

    def modulation(self, identity: Tensor) -> tuple[Tensor, Tensor]:
        """Return (γ, β) = (P_γ ê, P_β ê), each (B, C) (or (C,) for a (D,) identity), in ê's dtype."""
        return self.to_gamma(identity), self.to_beta(identity)

    def forward(self, h: Tensor, identity: Tensor | None) -> Tensor:
        """Return the modulated features (B, C, H, W) for features h (B, C, H, W) and identities ê (B, D)."""
        if identity is None:
            raise ValueError("AdaIN needs the identity vector ê; convert the network to instance norms to drop it")
        gamma, beta = self.modulation(identity)
        batch, channels, height, width = h.shape
        # Folding the batch into channels gives every sample its own (γ, β) while running the very
        # kernel that nn.InstanceNorm2d runs (it folds the same way), so conversion is exact.
        out = functional.instance_norm(
            h.reshape(1, batch * channels, height, width),
            weight=gamma.reshape(-1).to(h.dtype),
            bias=beta.reshape(-1).to(h.dtype),
            eps=self.eps,
        )
        return out.view(batch, channels, height, width)

    def to_instance_norm(self, identity: Tensor) -> TargetInstanceNorm:
        """Return an affine instance norm with weight P_γ ê and bias P_β ê for one identity ê (D,) (§3.4)."""
        if identity.shape != (self.identity_dim,):
            raise ValueError(
                f"expected one identity vector of shape ({self.identity_dim},), got {tuple(identity.shape)}"
            )
        norm = TargetInstanceNorm(self.channels, eps=self.eps)
        with torch.no_grad():
            gamma, beta = self.modulation(identity.to(self.to_gamma.weight))
            norm.weight.copy_(gamma)
            norm.bias.copy_(beta)
        return norm.to(self.to_gamma.weight.device)


class TargetInstanceNorm(nn.InstanceNorm2d):
    """An affine InstanceNorm2d for one target; takes (and ignores) the identity argument so it can replace AdaIN."""

    def __init__(self, channels: int, eps: float = INSTANCE_NORM_EPS) -> None:
        super().__init__(channels, eps=eps, affine=True, track_running_stats=False)

    def forward(self, h: Tensor, identity: Tensor | None = None) -> Tensor:
        """Return the normalised features (B, C, H, W) with the learned per-channel weight and bias."""
        return super().forward(h)


IdentityNorm = AdaIN | TargetInstanceNorm


def replace_adain(module: nn.Module, identity: Tensor) -> int:
    """Return how many AdaIN layers under `module` were replaced, in place, by TargetInstanceNorm for ê (D,)."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AdaIN):
                setattr(parent, name, child.to_instance_norm(identity))
                replaced += 1
    return replaced
