"""The YAML configuration files of every headcast component, shipped with the package.

Each component owns one pydantic model for its configuration, a `StrictConfig` naming its file
(`config_name = "edge"` reads `configs/edge.yaml`); `Model.load(profile, path=…, **overrides)` is
the one way every configuration is read. Every default lives in the YAML file, every field is
documented where it is typed, and a value that does not fit raises `ConfigError` naming the file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from base.errors import HeadcastError


class ConfigError(HeadcastError, ValueError):
    """A configuration file, profile or override that does not fit its model; the message names the file."""


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
    name: str, profile: str = "default", path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return profile `profile` of `configs/<name>.yaml` (or `path`) merged over its `default` section.

    A file with a top-level `default` mapping has profiles: `default` holds every field and any other
    top-level section is a profile whose fields override it. A file without one is a single profile,
    `default`. Mappings (e.g. `losses`) are merged one level deep, and so are mappings in `overrides`,
    applied last. An unknown profile raises ConfigError naming the ones there are.
    """
    sections = load(name, path)
    if not isinstance(sections.get("default"), dict):
        sections = {"default": sections}
    if profile not in sections:
        raise ConfigError(f"no profile {profile!r} in configs/{name}.yaml: choose one of {', '.join(sections)}")
    merged: dict[str, Any] = dict(sections["default"])
    for layer in (sections[profile] if profile != "default" else {}, overrides):
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


class StrictConfig(BaseModel):
    """Base of every component's configuration model: unknown fields are errors, instances are frozen.

    config_name: the file in configs/ a top-level model is read from ("" for a nested section).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    config_name: ClassVar[str] = ""

    @classmethod
    def load(cls, profile: str = "default", *, path: str | Path | None = None, **overrides: Any) -> Self:
        """Return the configuration of `profile` in configs/<config_name>.yaml (or `path`), `overrides` applied last.

        Overrides that are None are skipped (an option the user did not give); mappings are merged
        one level deep. Raises ConfigError naming the file for an unknown profile or a value out of range.
        """
        if not cls.config_name:
            raise TypeError(f"{cls.__name__} is a section of a configuration, not a file: load its file's model")
        given = {key: value for key, value in overrides.items() if value is not None}
        values = load_profile(cls.config_name, profile, path, given)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(f"{path or f'configs/{cls.config_name}.yaml'} ({profile}): {error}") from None
