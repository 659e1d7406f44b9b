"""The YAML configuration files of every headcast component, shipped with the package.

Each component owns one pydantic model for its configuration; this module only finds and reads
the YAML that fills it (`load("edge")` reads `configs/edge.yaml`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


def load(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """Return the mapping in `configs/<name>.yaml`, or in `path` when one is given."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    else:
        resource = resources.files(__package__).joinpath(f"{name}.yaml")
        if not resource.is_file():
            raise FileNotFoundError(f"no configuration named {name!r} in the configs package")
        text = resource.read_text(encoding="utf-8")
        source = f"configs/{name}.yaml"
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a mapping at its top level, not {type(data).__name__}")
    return data


class StrictConfig(BaseModel):
    """Base of every component's configuration model: unknown fields are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
