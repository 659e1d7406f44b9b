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


def load_profile(
    name: str,
    profile: str = "default",
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """Return profile `profile` of `configs/<name>.yaml` (or `path`) merged over its `default` section.

    The file's `default` section holds every field; any other top-level section is a profile whose
    fields override it; mappings (e.g. `losses`) are merged one level deep, and so are mappings in
    `overrides`, applied last. An unknown profile raises `error` naming the ones there are.
    """
    sections = load(name, path)
    if profile not in sections:
        raise error(f"no profile {profile!r} in configs/{name}.yaml: choose one of {', '.join(sections)}")
    merged: dict[str, Any] = dict(sections.get("default") or {})
    for layer in (sections[profile] if profile != "default" else {}, overrides):
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


class StrictConfig(BaseModel):
    """Base of every component's configuration model: unknown fields are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
