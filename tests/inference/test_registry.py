"""The target registry: atomic versioned bundles, validated ids, any fsspec root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d import PersonModel, assets, load_canonical_mesh
from inference.registry import (
    MANIFEST,
    Consent,
    RegistryError,
    TargetBundle,
    TargetMetadata,
    TargetRegistry,
    validate_target_id,
)


@pytest.fixture(scope="module")
def person() -> PersonModel:
    assets.ensure("face_landmarker")
    mesh = load_canonical_mesh()
    basis = np.random.default_rng(0).normal(scale=0.1, size=(468, 3, 52))
    return PersonModel(neutral=mesh.vertices.astype(np.float64), basis=basis)


def bundle(person: PersonModel, target_id: str = "alice", seed: int = 0) -> TargetBundle:
    generator = torch.Generator().manual_seed(seed)
    consent = Consent("Alice Example", "2026-11-25T10:00:00+00:00", hashlib.sha256(b"recording").hexdigest())
    return TargetBundle(
        metadata=TargetMetadata(
            target_id, "alice@example.org", consent, "tiny", ("bob",), {"steps": 10}, {"psnr": 30.5}
        ),
        generator_state={"conv.weight": torch.randn(4, 3, 3, 3, generator=generator), "conv.bias": torch.zeros(4)},
        person=person,
        identity=np.random.default_rng(seed).normal(size=128).astype(np.float32),
        background=np.random.default_rng(seed).integers(0, 255, (32, 48, 3), dtype=np.uint8),
    )


@pytest.mark.parametrize("root", ["local", "memory://headcast-registry-test"])
def test_bundles_round_trip(person: PersonModel, root: str, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path / "registry") if root == "local" else root)
    original = bundle(person)
    version = registry.save(original)
    loaded = registry.load("alice")
    assert loaded.version == version and registry.ids() == ["alice"]
    assert loaded.metadata == original.metadata
    for key, tensor in original.generator_state.items():
        assert torch.equal(loaded.generator_state[key], tensor)
    np.testing.assert_array_equal(loaded.person.basis, person.basis)
    np.testing.assert_array_equal(loaded.identity, original.identity)
    np.testing.assert_array_equal(loaded.background, original.background)
    registry.delete("alice")
    assert registry.ids() == []


def test_two_enrolments_of_one_name_never_corrupt_each_other(person: PersonModel, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path))
    first = registry.save(bundle(person, seed=1))
    second = registry.save(bundle(person, seed=2))
    assert registry.versions("alice") == [first, second]
    newest, oldest = registry.load("alice"), registry.load("alice", first)
    np.testing.assert_array_equal(newest.identity, bundle(person, seed=2).identity)
    np.testing.assert_array_equal(oldest.identity, bundle(person, seed=1).identity)


def test_an_uncommitted_version_is_invisible(person: PersonModel, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path))
    good = registry.save(bundle(person))
    killed = registry.save(bundle(person, seed=3))
    (tmp_path / "targets" / "alice" / killed / MANIFEST).unlink()  # as if killed before the commit marker
    assert registry.versions("alice") == [good]
    assert registry.load("alice").version == good
    (tmp_path / "targets" / "bob" / "20260101T000000000000Z-dead").mkdir(parents=True)
    assert registry.ids() == ["alice"], "a target with no committed version is not listed"


@pytest.mark.parametrize("bad", ["", "../etc", "Alice", "a/b", "a" * 65, "-x", "x y", ".hidden", "é"])
def test_ids_are_validated(bad: str, person: PersonModel, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a valid target id"):
        validate_target_id(bad)
    registry = TargetRegistry(str(tmp_path))
    with pytest.raises(RegistryError):
        registry.load(bad)
    with pytest.raises(RegistryError):
        registry.save(bundle(person, target_id=bad))
    assert not any(tmp_path.rglob("*.pt"))


def test_unknown_targets_and_versions(person: PersonModel, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path))
    registry.save(bundle(person))
    with pytest.raises(RegistryError, match=r"no target 'carol'.*alice"):
        registry.load("carol")
    with pytest.raises(RegistryError, match="has no version"):
        registry.load("alice", "nope")
    with pytest.raises(RegistryError, match="no target"):
        registry.delete("carol")


def test_a_damaged_bundle_is_refused(person: PersonModel, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path))
    version = registry.save(bundle(person))
    (tmp_path / "targets" / "alice" / version / "generator.pt").write_bytes(b"garbage")
    with pytest.raises(RegistryError, match="damaged"):
        registry.load("alice")


def test_consent_records_are_checked() -> None:
    with pytest.raises(RegistryError, match="names the person"):
        Consent(" ", "2026-11-25T10:00:00+00:00", "0" * 64)
    with pytest.raises(RegistryError, match="sha256"):
        Consent("Alice", "2026-11-25T10:00:00+00:00", "abc")
