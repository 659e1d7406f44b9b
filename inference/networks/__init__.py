"""The served networks: the generator G (eq. 5) with AdaIN (eq. 6), the identity embedder E (eq. 4), their configs."""

from inference.networks.adain import AdaIN, TargetInstanceNorm, replace_adain
from inference.networks.config import (
    MODEL_SIZES,
    EmbedderConfig,
    GeneratorConfig,
    ModelConfig,
    load_model_config,
)
from inference.networks.embedder import IdentityEmbedder, mean_identity
from inference.networks.generator import Generator, GeneratorOutput

__all__ = [
    "MODEL_SIZES",
    "AdaIN",
    "EmbedderConfig",
    "Generator",
    "GeneratorConfig",
    "GeneratorOutput",
    "IdentityEmbedder",
    "ModelConfig",
    "TargetInstanceNorm",
    "load_model_config",
    "mean_identity",
    "replace_adain",
]
