"""The target registry: atomic versioned bundles, validated ids, any fsspec root."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from base import assets
from base.targets import TargetIdError, validate_target_id
from face3d import PersonModel, load_canonical_mesh
from inference.registry import (
    MANIFEST,
    REFERENCES_FILE,
    Consent,
    RegistryError,
    TargetBundle,
    TargetMetadata,
    TargetRegistry,
    TargetRevokedError,
)
from inference.warp import ReferenceFrames


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


def reference_frames(seed: int = 0) -> ReferenceFrames:
    rng = np.random.default_rng(seed)
    return ReferenceFrames(
        images=rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8),
        masks=rng.integers(0, 255, (2, 16, 16), dtype=np.uint8),
        vertices_px=rng.uniform(0, 16, (2, 468, 3)).astype(np.float32),
        visible=(rng.uniform(size=(2, 468)) > 0.1).astype(np.float32),
        kinds=("frontal", "mouth open"),
        frame_indices=(3, 17),
    )


def test_reference_frames_round_trip_and_older_bundles_load_without_them(person: PersonModel, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path / "registry"))
    references = reference_frames()
    registry.save(dataclasses.replace(bundle(person), references=references))
    loaded = registry.load("alice").references
    assert loaded is not None and loaded.kinds == references.kinds and loaded.frame_indices == (3, 17)
    for name in ("images", "masks", "vertices_px", "visible"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(references, name))
    # A bundle of format 1 (before reference frames) still loads, without them.
    version = registry.save(bundle(person, "bob"))
    folder = tmp_path / "registry" / "targets" / "bob" / version
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format_version": 1}))
    assert registry.load("bob").references is None
    # Damaged reference frames refuse the bundle with what to do.
    version = registry.save(dataclasses.replace(bundle(person, "carol"), references=references))
    (tmp_path / "registry" / "targets" / "carol" / version / REFERENCES_FILE).write_bytes(b"not an npz")
    with pytest.raises(RegistryError, match=r"damaged.*enrol the target again"):
        registry.load("carol")


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
    with pytest.raises(TargetIdError, match="not a valid target id"):
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


@pytest.mark.parametrize("root", ["local", "memory://headcast-registry-revoke"])
def test_a_revoked_target_no_longer_loads(person: PersonModel, root: str, tmp_path: Path) -> None:
    registry = TargetRegistry(str(tmp_path / "registry") if root == "local" else root)
    registry.save(bundle(person))
    registry.save(bundle(person, "bob"))
    assert registry.state("alice") == "enrolled" and registry.revocation("alice") is None
    revocation = registry.revoke("alice", "alice@example.org", "consent withdrawn")
    assert (revocation.target_id, revocation.by, revocation.reason) == (
        "alice",
        "alice@example.org",
        "consent withdrawn",
    )
    assert registry.state("alice") == "revoked" and registry.state("bob") == "enrolled"
    assert registry.state("nobody") == "unknown"
    with pytest.raises(TargetRevokedError, match=r"revoked by alice@example.org .*: consent withdrawn"):
        registry.load("alice")
    assert registry.revoke("alice", "someone else") == revocation  # the first revocation stands
    assert registry.ids() == ["alice", "bob"]  # listed until deleted, with its state
    registry.load("bob")  # the others are untouched
    with pytest.raises(RegistryError, match="no target"):
        registry.revoke("nobody", "alice@example.org")
    registry.delete("alice")
    registry.delete("bob")


def test_deleting_a_target_leaves_a_receipt_of_every_file(person: PersonModel, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    registry = TargetRegistry(str(root))
    versions = (
        registry.save(bundle(person)),
        registry.save(dataclasses.replace(bundle(person), references=reference_frames())),
    )
    before = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in (root / "targets" / "alice").rglob("*") if p.is_file()}  # fmt: skip
    receipt = registry.delete("alice")
    assert not (root / "targets" / "alice").exists() and registry.ids() == []
    assert receipt.versions == versions and receipt.owner == "alice@example.org"
    assert receipt.consent_subject == "Alice Example"
    listed = {f.path: f.sha256 for f in receipt.files}
    assert {k: v for k, v in listed.items() if not k.endswith("revoked.json")} == before  # every file, its hash
    assert any(k.endswith("revoked.json") for k in listed)  # revoked first: live sessions ended before the files went
    kept = json.loads(Path(receipt.path).read_text())
    assert kept["target_id"] == "alice" and len(kept["files"]) == len(receipt.files) and kept["deleted_at"]
    with pytest.raises(RegistryError, match="no target"):
        registry.delete("alice")
