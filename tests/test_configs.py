"""Every configuration is read one way, `Model.load(profile, path=…, **overrides)`, and refuses what does not fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import configs
from configs import ConfigError
from edge.config import EdgeConfig
from inference.serve_config import ServingConfig
from signaling.config import GatewayConfig
from training.enrol import EnrolConfig
from training.finetune import FinetuneConfig
from training.preprocess import PreprocessConfig
from training.trainer_steps import PretrainConfig

FILES = [EdgeConfig, PreprocessConfig, ServingConfig, GatewayConfig, PretrainConfig, EnrolConfig]


@pytest.mark.parametrize("model", FILES, ids=lambda m: m.config_name)
def test_every_profile_of_every_file_loads(model: type[configs.StrictConfig]) -> None:
    sections = configs.load(model.config_name)
    profiles = list(sections) if isinstance(sections.get("default"), dict) else ["default"]
    for profile in profiles:
        assert isinstance(model.load(profile), model)


def test_overrides_apply_last_and_none_means_not_given() -> None:
    assert GatewayConfig.load(port=9000, host=None).port == 9000
    assert GatewayConfig.load(host=None).host == GatewayConfig.load().host
    tuned = PretrainConfig.load("cpu", steps=7, losses={"pixel": 3.0})
    assert tuned.steps == 7 and tuned.losses.pixel == 3.0
    assert tuned.losses.vgg == PretrainConfig.load("cpu").losses.vgg, "mappings merge one level deep"


def test_an_unknown_profile_names_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match=r"no profile 'nonsense' in configs/pretrain\.yaml: choose one of default"):
        PretrainConfig.load("nonsense")
    with pytest.raises(ConfigError, match=r"no profile 'cpu' in configs/gateway\.yaml"):
        GatewayConfig.load("cpu")


def test_a_bad_value_names_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "serving.yaml"
    bad.write_text("output_size: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"(?s)serving\.yaml.*output_size"):
        ServingConfig.load(path=bad)
    with pytest.raises(ConfigError, match="default_fps"):
        GatewayConfig.load(default_fps=90, max_fps=60)


def test_enrolment_refuses_a_pretraining_profile_that_does_not_exist() -> None:
    # A cross-file constraint, checked when enrol.yaml is read.
    with pytest.raises(ConfigError, match=r"no profile 'huge' in configs/pretrain\.yaml"):
        EnrolConfig.load("cpu", finetune={"pretrain_profile": "huge"})


def test_a_section_is_loaded_through_its_files_model() -> None:
    with pytest.raises(TypeError, match="a section of a configuration"):
        FinetuneConfig.load()


def _drift(model: type[BaseModel], values: dict[str, Any], where: str) -> list[str]:
    """Return the fields whose default in code is not the value `values` (a file's section) gives them."""
    drift = []
    for name, field in model.model_fields.items():
        if name not in values:
            drift.append(f"{where}{name}: in the code, not in the file")
            continue
        value, annotation = values[name], field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
            if not field.is_required():  # a section with a default of its own: compare it, then its fields
                default = field.get_default(call_default_factory=True).model_dump(mode="json")
                drift += [f"{where}{name}.{key}" for key in value if default.get(key) != value[key]]
            else:
                drift += _drift(annotation, value, f"{where}{name}.")
        elif field.is_required() or json.dumps(field.get_default(call_default_factory=True), default=str) != json.dumps(
            value, default=str
        ):
            drift.append(f"{where}{name}: {field.get_default()!r} in the code, {value!r} in the file")
    return drift


@pytest.mark.parametrize("model", FILES, ids=lambda m: m.config_name)
def test_the_code_defaults_are_the_files_so_there_is_one_set_of_defaults(model: type[configs.StrictConfig]) -> None:
    # The YAML's `default` section is what everyone reads and edits; the models' own defaults exist so a
    # section can be built in code, and must say the same.
    assert _drift(model, configs.load_profile(model.config_name), "") == []
