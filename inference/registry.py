"""The target registry: enrolled targets as immutable, versioned bundles under a root (a path or any fsspec URI).

A bundle is everything serving needs to render one target: the fine-tuned generator's weights, the
target's PersonModel, a background plate, the identity vector ê, and metadata (owner, consent
record, training config, metrics). Layout under the root::

    targets/<target id>/<version>/generator.pt, person.npz, background.png, identity.npy,
                                   references.npz, manifest.json

`references.npz` holds the K reference frames the avatar is warped from (inference/warp.py), each
with its mask and fitted mesh; bundles of format 1 have none and are served without the warp.

Consent can be taken back. `revoke` writes `targets/<target id>/revoked.json` (who, when, why): from
then on the target no longer loads, the Serve app refuses to render it and the gateway ends the sessions
driving it. `delete` removes every file of a target and returns (and keeps, under `receipts/`) a receipt
listing each file it removed with its size and sha256.

A version's files are written first and its manifest last: the manifest is the commit marker, so
a reader never sees half a bundle, an enrolment killed mid-way leaves nothing that loads, and two
enrolments of one name write two versions instead of corrupting each other (the newest committed
one is served). Ids are validated, so no id can reach outside the root.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import pickle
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np
import numpy.typing as npt
import torch

from base.errors import HeadcastError
from base.targets import TargetIdError, is_target_id, validate_target_id
from face3d.errors import FitError
from face3d.person import PersonModel
from inference.networks import Generator, GeneratorConfig
from inference.warp import ReferenceFrames, WarpError

BUNDLE_FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: before reference frames were kept
MANIFEST = "manifest.json"
FILES = {"generator": "generator.pt", "person": "person.npz", "background": "background.png",
         "identity": "identity.npy"}  # fmt: skip
REFERENCES_FILE = "references.npz"
REVOKED_FILE = "revoked.json"
RECEIPTS = "receipts"


class RegistryError(HeadcastError):
    """A target or bundle cannot be stored or found; the message says what to do."""


class TargetRevokedError(RegistryError):
    """The target's consent was revoked: it may no longer be loaded or driven."""


def _checked(target_id: str) -> str:
    """Return `target_id` when it is a valid id (base.targets' rule); RegistryError otherwise."""
    try:
        return validate_target_id(target_id)
    except TargetIdError as error:
        raise RegistryError(str(error)) from None


@dataclass(frozen=True)
class Consent:
    """Who agreed to be enrolled, when, and the sha256 of the recording they agreed to."""

    subject: str
    recorded_at: str  # ISO 8601, UTC
    recording_sha256: str

    def __post_init__(self) -> None:
        if not self.subject.strip():
            raise RegistryError("a consent record names the person who agreed to be enrolled")
        if not re.fullmatch(r"[0-9a-f]{64}", self.recording_sha256):
            raise RegistryError("a consent record carries the recording's sha256 (64 hex digits)")


@dataclass(frozen=True)
class TargetMetadata:
    """What a bundle says about itself besides its arrays."""

    target_id: str
    owner: str
    consent: Consent
    model_size: str
    allowed_drivers: tuple[str, ...] = ()  # who the owner allows to drive this target; empty: the owner only
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Revocation:
    """A target taken out of service: who revoked it, when (ISO 8601, UTC) and why."""

    target_id: str
    revoked_at: str
    by: str
    reason: str

    def describe(self) -> str:
        """Return one sentence for people: whose target, by whom, when, why."""
        why = f": {self.reason}" if self.reason else ""
        return f"target {self.target_id!r} was revoked by {self.by} at {self.revoked_at}{why}"


@dataclass(frozen=True)
class DeletedFile:
    """One file a deletion removed: its path under the registry root, size and sha256."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class DeletionReceipt:
    """What `TargetRegistry.delete` removed, and when; `path` is where the receipt is kept."""

    target_id: str
    deleted_at: str
    owner: str
    consent_subject: str
    versions: tuple[str, ...]
    files: tuple[DeletedFile, ...]
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the receipt as JSON data."""
        data = asdict(self)
        data["versions"], data["files"] = list(self.versions), [asdict(f) for f in self.files]
        return data


@dataclass(frozen=True)
class TargetBundle:
    """One enrolled target, ready to serve.

    generator_state: the fine-tuned generator's state dict (AdaIN already converted to instance norms).
    identity: (D,) float32 the target's identity vector ê (eq. 9).
    background: (H, W, 3) uint8 RGB plate the avatar is composited on.
    references: the frames the avatar is warped from; None in bundles enrolled before the warp.
    version: set by the registry when stored.
    """

    metadata: TargetMetadata
    generator_state: Mapping[str, torch.Tensor]
    person: PersonModel
    identity: npt.NDArray[np.float32]
    background: npt.NDArray[np.uint8]
    version: str = ""
    references: ReferenceFrames | None = None


class TargetRegistry:
    """Targets stored under `root` (a local path or an fsspec URI such as s3://bucket/headcast)."""

    def __init__(self, root: str) -> None:
        self.root = str(root).rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root)

    def _dir(self, *parts: str) -> str:
        return "/".join([self._base, "targets", *parts])

    def ids(self) -> list[str]:
        """Return the ids of all targets with at least one committed version, sorted."""
        if not self.fs.exists(self._dir()):
            return []
        found = []
        for entry in self.fs.ls(self._dir(), detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if is_target_id(name) and self.versions(name):
                found.append(name)
        return sorted(found)

    def versions(self, target_id: str) -> list[str]:
        """Return the committed versions of a target, oldest first (versions sort by creation time)."""
        folder = self._dir(_checked(target_id))
        if not self.fs.exists(folder):
            return []
        versions = [str(v).rstrip("/").rsplit("/", 1)[-1] for v in self.fs.ls(folder, detail=False)]
        return sorted(v for v in versions if self.fs.exists(f"{folder}/{v}/{MANIFEST}"))

    def save(self, bundle: TargetBundle) -> str:
        """Store `bundle` as a new version of its target; return the version."""
        target_id = _checked(bundle.metadata.target_id)
        if bundle.identity.ndim != 1 or not np.all(np.isfinite(bundle.identity)):
            raise RegistryError("the identity vector must be a finite 1-d array")
        if bundle.background.ndim != 3 or bundle.background.shape[2] != 3 or bundle.background.dtype != np.uint8:
            raise RegistryError("the background plate must be an (H, W, 3) uint8 RGB image")
        now = _dt.datetime.now(_dt.UTC)
        version = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        folder = self._dir(target_id, version)
        self.fs.makedirs(folder, exist_ok=True)
        generator = io.BytesIO()
        torch.save(dict(bundle.generator_state), generator)
        identity = io.BytesIO()
        np.save(identity, bundle.identity.astype(np.float32))
        blobs = {FILES["generator"]: generator.getvalue(), FILES["person"]: bundle.person.to_bytes(),
                 FILES["identity"]: identity.getvalue(), FILES["background"]: _png(bundle.background)}  # fmt: skip
        if bundle.references is not None:
            blobs[REFERENCES_FILE] = _references_npz(bundle.references)
        for name, data in blobs.items():
            with self.fs.open(f"{folder}/{name}", "wb") as stream:
                stream.write(data)
        manifest = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "version": version,
            "created": now.isoformat(),
            "metadata": _metadata_json(bundle.metadata),
        }
        # The commit marker, written last.
        with self.fs.open(f"{folder}/{MANIFEST}", "w") as stream:
            stream.write(json.dumps(manifest, indent=2))
        return version

    def metadata(self, target_id: str, version: str | None = None) -> TargetMetadata:
        """Return a target's metadata (its newest version unless `version` is given)."""
        manifest, folder = self._manifest(target_id, version)
        return _metadata_from_json(manifest, f"{folder}/{MANIFEST}")

    def _manifest(self, target_id: str, version: str | None) -> tuple[dict[str, Any], str]:
        versions = self.versions(target_id)
        if not versions:
            known = ", ".join(self.ids()) or "none"
            raise RegistryError(f"no target {target_id!r} in {self.root} (enrolled targets: {known})")
        chosen = version or versions[-1]
        if chosen not in versions:
            raise RegistryError(f"target {target_id!r} has no version {chosen!r}; versions: {', '.join(versions)}")
        folder = self._dir(target_id, chosen)
        try:
            with self.fs.open(f"{folder}/{MANIFEST}", "r") as stream:
                manifest = json.loads(stream.read())
        except (OSError, ValueError) as error:
            raise RegistryError(f"{folder}/{MANIFEST} is unreadable ({error})") from None
        if not isinstance(manifest, dict):
            raise RegistryError(f"{folder}/{MANIFEST} is not a bundle manifest (a JSON object); enrol the target again")
        if manifest.get("format_version") not in READABLE_FORMATS:
            raise RegistryError(f"{folder}: bundle format {manifest.get('format_version')}, this headcast reads "
                                f"{', '.join(map(str, READABLE_FORMATS))}; enrol the target again")  # fmt: skip
        return manifest, folder

    def revoke(self, target_id: str, by: str, reason: str = "") -> Revocation:
        """Take `target_id` out of service for good (idempotent: a revoked target keeps its first revocation)."""
        if not by.strip():
            raise RegistryError("a revocation names who revoked the target")
        if not self.versions(target_id):
            raise RegistryError(f"no target {target_id!r} in {self.root}")
        existing = self.revocation(target_id)
        if existing is not None:
            return existing
        revocation = Revocation(target_id, _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"), by, reason)
        with self.fs.open(self._dir(target_id, REVOKED_FILE), "w") as stream:
            stream.write(json.dumps(asdict(revocation), indent=2))
        return revocation

    def revocation(self, target_id: str) -> Revocation | None:
        """Return the target's revocation, None while it may be driven."""
        path = self._dir(_checked(target_id), REVOKED_FILE)
        try:
            with self.fs.open(path, "r") as stream:
                data = json.loads(stream.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # unreadable counts as revoked: never serve what may be withdrawn
            return Revocation(target_id, "", "unknown", f"{path} is unreadable ({error})")
        if not isinstance(data, dict):
            return Revocation(target_id, "", "unknown", f"{path} is not a revocation record")
        return Revocation(**{key: str(data.get(key, "")) for key in ("target_id", "revoked_at", "by", "reason")})

    def state(self, target_id: str) -> Literal["enrolled", "revoked", "unknown"]:
        """Return whether `target_id` may be driven ("enrolled"), was revoked, or is not in the registry."""
        if not self.versions(target_id):
            return "unknown"
        return "revoked" if self.revocation(target_id) is not None else "enrolled"

    def load(self, target_id: str, version: str | None = None) -> TargetBundle:
        """Return a target's bundle (its newest version unless `version` is given); TargetRevokedError once revoked."""
        revocation = self.revocation(target_id)
        if revocation is not None:
            raise TargetRevokedError(f"{revocation.describe()}; it can no longer be driven")
        manifest, folder = self._manifest(target_id, version)
        try:
            with self.fs.open(f"{folder}/{FILES['generator']}", "rb") as stream:
                state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
            with self.fs.open(f"{folder}/{FILES['person']}", "rb") as stream:
                person = PersonModel.from_bytes(stream.read(), f"{folder}/{FILES['person']}")
            with self.fs.open(f"{folder}/{FILES['identity']}", "rb") as stream:
                identity = np.load(io.BytesIO(stream.read()), allow_pickle=False)
            with self.fs.open(f"{folder}/{FILES['background']}", "rb") as stream:
                background = _unpng(stream.read())
            references = None
            if self.fs.exists(f"{folder}/{REFERENCES_FILE}"):
                with self.fs.open(f"{folder}/{REFERENCES_FILE}", "rb") as stream:
                    references = _references_from_npz(stream.read())
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, FitError, KeyError,
                WarpError) as error:  # fmt: skip
            raise RegistryError(f"the bundle in {folder} is damaged ({error}); enrol the target again") from None
        version_name = str(manifest.get("version", folder.rsplit("/", 1)[-1]))
        return TargetBundle(_metadata_from_json(manifest, f"{folder}/{MANIFEST}"), state, person,
                            identity.astype(np.float32), background, version_name, references)  # fmt: skip

    def delete(self, target_id: str) -> DeletionReceipt:
        """Remove a target and all its versions; return the receipt, also kept under `receipts/`.

        It is revoked first (live sessions end) and its manifests go before the other files, so no reader
        sees a partial bundle while the files are removed.
        """
        folder = self._dir(_checked(target_id))
        if not self.fs.exists(folder):
            raise RegistryError(f"no target {target_id!r} in {self.root}")
        versions = self.versions(target_id)
        meta = self.metadata(target_id) if versions else None
        if versions:
            self.revoke(target_id, "the deletion", "deleted")
        files = []
        for path in sorted(str(p) for p in self.fs.find(folder)):
            digest = hashlib.sha256()
            with self.fs.open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            files.append(DeletedFile(path[len(self._base) + 1 :], int(self.fs.size(path)), digest.hexdigest()))
        for version in versions:
            self.fs.rm(f"{folder}/{version}/{MANIFEST}")
        self.fs.rm(folder, recursive=True)
        now = _dt.datetime.now(_dt.UTC)
        receipt = DeletionReceipt(target_id, now.isoformat(timespec="milliseconds"),
                                  meta.owner if meta else "", meta.consent.subject if meta else "",
                                  tuple(versions), tuple(files))  # fmt: skip
        name = f"{RECEIPTS}/{target_id}-{now:%Y%m%dT%H%M%S%fZ}.json"
        self.fs.makedirs(f"{self._base}/{RECEIPTS}", exist_ok=True)
        with self.fs.open(f"{self._base}/{name}", "w") as stream:
            stream.write(json.dumps(receipt.to_json(), indent=2))
        return dataclasses.replace(receipt, path=f"{self.root}/{name}")


def _metadata_json(metadata: TargetMetadata) -> dict[str, Any]:
    data = asdict(metadata)
    data["allowed_drivers"] = list(metadata.allowed_drivers)
    data["training"], data["metrics"] = dict(metadata.training), dict(metadata.metrics)
    return data


def _metadata_from_json(manifest: Mapping[str, Any], where: str) -> TargetMetadata:
    """Return the metadata of a bundle's manifest; RegistryError when it is not what `save` writes."""
    try:
        data = manifest["metadata"]
        texts = [data[key] for key in ("target_id", "owner", "model_size")]
        drivers, training, metrics = data.get("allowed_drivers", []), data.get("training", {}), data.get("metrics", {})
        consent = data["consent"]
        if not all(isinstance(text, str) for text in texts) or not isinstance(consent, dict):
            raise TypeError("target_id, owner and model_size are text, consent an object")
        if not isinstance(drivers, list) or not all(isinstance(d, str) for d in drivers):
            raise TypeError("allowed_drivers is a list of names")
        if not isinstance(training, dict) or not isinstance(metrics, dict):
            raise TypeError("training and metrics are objects")
        return TargetMetadata(target_id=texts[0], owner=texts[1], consent=Consent(**consent), model_size=texts[2],
                              allowed_drivers=tuple(drivers), training=training, metrics=metrics)  # fmt: skip
    except (KeyError, TypeError, AttributeError) as error:
        raise RegistryError(f"{where} holds no valid target metadata ({error}); enrol the target again") from None


def _references_npz(references: ReferenceFrames) -> bytes:
    stream = io.BytesIO()
    np.savez_compressed(stream, images=references.images, masks=references.masks,
                        vertices_px=references.vertices_px.astype(np.float32),
                        visible=references.visible.astype(np.float32), kinds=np.array(references.kinds, dtype=str),
                        frame_indices=np.array(references.frame_indices, dtype=np.int64))  # fmt: skip
    return stream.getvalue()


def _references_from_npz(data: bytes) -> ReferenceFrames:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return ReferenceFrames(
            images=npz["images"].astype(np.uint8),
            masks=npz["masks"].astype(np.uint8),
            vertices_px=npz["vertices_px"].astype(np.float32),
            visible=npz["visible"].astype(np.float32),
            kinds=tuple(str(kind) for kind in npz["kinds"]),
            frame_indices=tuple(int(i) for i in npz["frame_indices"]),
        )


def _png(image: npt.NDArray[np.uint8]) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise RegistryError("the background plate could not be encoded as PNG")
    return bytes(data.tobytes())


def _unpng(data: bytes) -> npt.NDArray[np.uint8]:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a PNG image")
    return np.ascontiguousarray(image[:, :, ::-1])


def target_generator(bundle: TargetBundle) -> Generator:
    """Return the bundle's fine-tuned generator, rebuilt and ready to serve (eval mode, CPU).

    The bundle's metadata carries the model configuration; the generator is built, its AdaIN layers
    converted with the bundle's ê (§3.4) so the weights' names match, and the weights loaded.
    """
    try:
        config = GeneratorConfig.model_validate(bundle.metadata.training["model_config"]["generator"])
    except (KeyError, TypeError, ValueError) as error:
        raise RegistryError(f"target {bundle.metadata.target_id!r} carries no usable model configuration "
                            f"({error}); enrol it again") from None  # fmt: skip
    generator = Generator(config)
    generator.convert_adain_to_instance_norm(torch.from_numpy(bundle.identity))
    try:
        generator.load_state_dict(dict(bundle.generator_state))
    except RuntimeError as error:
        raise RegistryError(f"target {bundle.metadata.target_id!r}: the weights do not fit its model "
                            f"configuration ({error}); enrol it again") from None  # fmt: skip
    return generator.eval()


REGISTRY_ENV = "HEADCAST_REGISTRY"


def default_registry_root() -> str:
    """Return the registry root: $HEADCAST_REGISTRY, else a folder in the user data directory."""
    import os

    import platformdirs

    return os.environ.get(REGISTRY_ENV) or str(platformdirs.user_data_path("headcast") / "registry")
