"""Fixtures shared across the suite: the sample clip and its tracks (computed once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from base import assets

# Ray waits 30 s for a new GCS to write its port file. With the previous module's Ray still exiting on a
# loaded 2-core machine that ran out (once in ~500 tests); the wait ends as soon as the GCS is up, so a
# generous bound costs nothing otherwise. Child processes (the CLI's tests, Ray's own) inherit it.
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """The sample clip (Debian opencv-doc's Megamind.avi), verified against its sha256."""
    return assets.resolve("sample_clip")


@pytest.fixture(scope="session")
def sample_tracks_dir(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the sample clip's tracks.npz and summary.json, tracked once per test session."""
    from edge import save_tracks, track_video

    for name in ("face_landmarker", "face_descriptor", "face_aligner"):
        assets.ensure(name)
    folder = tmp_path_factory.mktemp("sample-tracks")
    save_tracks(track_video(sample_clip), folder)
    return folder


@pytest.fixture(scope="session")
def sample_tracks(sample_tracks_dir: Path):  # type: ignore[no-untyped-def]
    """The sample clip's Tracks (270 frames; person 0 is the woman, person 1 the man)."""
    from edge import load_tracks

    return load_tracks(sample_tracks_dir)


# --- live sessions: a served target and the Serve app ---------------------------------------------------------------

AVATAR_TARGET = "woman"


def build_avatar_bundle(tracks, target_id: str = AVATAR_TARGET, seed: int = 0):  # type: ignore[no-untyped-def]
    """Return a servable bundle of the sample clip's woman: her fitted PersonModel and crop framing, four
    of her frames as warp references (chosen for coverage, cropped as enrolment crops them; their masks
    the fitted mesh's coverage), a tiny generator with random weights (seeded: its heads start at zero,
    so it shows the warped references) and a grey plate."""
    import hashlib

    import numpy as np
    import torch

    from edge.capture import VideoFile
    from face3d.fit import fit_person
    from face3d.raster import rasterise
    from face3d.warp import warp_topology
    from inference.networks import Generator, load_model_config
    from inference.registry import Consent, TargetBundle, TargetMetadata
    from inference.warp import ReferenceFrames
    from training.enrol import crop_record
    from training.geometry import fitted_frames, load_fit_config, mesh_in_crop
    from training.preprocess import PreprocessConfig, crop_boxes, crop_square
    from training.references import choose_references_from_meshes

    frames = tracks.frames_of(0)
    fit = fit_person(frames, load_fit_config())
    person = fit.model
    fitted = fitted_frames(fit)
    model = load_model_config("tiny")
    framing = PreprocessConfig.load()
    kept = [f for f in frames if f.index in fitted]
    boxes = crop_boxes(np.stack([f.landmarks_px()[:468] for f in kept]), framing.crop_margin, framing.smooth_frames)
    image_size = (tracks.source.width, tracks.source.height)
    meshes = np.stack([mesh_in_crop(fitted[f.index], image_size, box, model.size_px)
                       for f, box in zip(kept, boxes, strict=True)])  # fmt: skip
    choice = choose_references_from_meshes(meshes, k=model.generator.warp_references)
    wanted = {kept[i].index: i for i in choice.indices}
    crops: dict[int, np.ndarray] = {}
    with VideoFile(assets.resolve("sample_clip")) as video:
        for decoded in video:
            if decoded.index in wanted:
                crops[decoded.index] = crop_square(decoded.rgb, boxes[wanted[decoded.index]], model.size_px)
    topology = warp_topology()
    picks = list(choice.indices)
    masks = np.stack([rasterise(meshes[i], topology.triangles, (model.size_px,) * 2).mask for i in picks])
    references = ReferenceFrames.of(np.stack([crops[kept[i].index] for i in picks]), masks.astype(np.uint8) * 255,
                                    meshes[picks], choice.kinds, picks, topology)  # fmt: skip
    torch.manual_seed(seed)
    generator = Generator(model.generator)
    generator.convert_adain_to_instance_norm(torch.randn(model.identity_dim))
    identity = np.zeros(model.identity_dim, np.float32)  # unused once converted; kept for the bundle's format
    consent = Consent("Sample Clip Woman", "2026-11-26T00:00:00+00:00", hashlib.sha256(b"sample").hexdigest())
    metadata = TargetMetadata(
        target_id,
        "alice",
        consent,
        "tiny",
        ("bob",),
        {
            "model_config": model.model_dump(mode="json"),
            "crop": crop_record(
                [[f for f in frames if f.index in fitted]], tracks.source.width, PreprocessConfig.load()
            ).to_json(),
        },
    )
    plate = np.full((model.size_px, model.size_px, 3), 96, np.uint8)
    state = {key: value.detach().clone() for key, value in generator.state_dict().items()}
    return TargetBundle(metadata, state, person, identity, plate, references=references)


@pytest.fixture(scope="session")
def avatar_bundle(sample_tracks):  # type: ignore[no-untyped-def]
    """The TargetBundle of build_avatar_bundle (target "woman", owner alice, bob may drive it)."""
    return build_avatar_bundle(sample_tracks)


@pytest.fixture(scope="session")
def avatar_registry(avatar_bundle, tmp_path_factory: pytest.TempPathFactory) -> str:  # type: ignore[no-untyped-def]
    """A registry root holding avatar_bundle as target "woman"."""
    from inference.registry import TargetRegistry

    root = str(tmp_path_factory.mktemp("avatar-registry"))
    TargetRegistry(root).save(avatar_bundle)
    return root


RAY_START_ATTEMPTS = 3


def start_local_ray() -> None:
    """Start a local Ray for one test module.

    Ray gives its raylet a fixed 30 s to register with the GCS (ray/_private/node.py) and raises a bare
    Exception past it; on a 2-core machine busy with other work that can happen to a healthy start, so
    a start that timed out is shut down and tried again (any other failure is raised at once).
    """
    import ray

    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            return
        except Exception as error:
            starting = ("timed out during startup", "Timed out waiting for file")  # the raylet's, the GCS port file's
            if not any(text in str(error) for text in starting) or attempt == RAY_START_ATTEMPTS:
                raise
            ray.shutdown()
            print(f"local Ray did not start within Ray's 30 s (attempt {attempt}); starting it again")


@pytest.fixture(scope="session")
def local_ray_starter():  # type: ignore[no-untyped-def]
    """start_local_ray, for modules that start their own Ray (with other Serve settings)."""
    return start_local_ray


@pytest.fixture(scope="module")
def avatar_app(avatar_registry: str):  # type: ignore[no-untyped-def]
    """Local Ray with the Serve app "avatar" (one CPU replica, eager, 128² output) serving avatar_registry.

    Module-scoped: Ray is shut down after each module, so modules that start Ray themselves
    (pretraining, preprocessing) never meet a running instance.
    """
    import ray
    from ray import serve

    from inference.serve_app import run_app
    from inference.serve_config import ServingConfig

    config = ServingConfig.load(registry=avatar_registry, output_size=128, num_cpus=0.0)
    start_local_ray()
    try:
        run_app(config)
        yield config
    finally:
        serve.shutdown()
        ray.shutdown()


# --- enrolment jobs: a private Ray head for the gateway's enroller -------------------------------------------------


@pytest.fixture(scope="module")
def enrolment_jobs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A private cache (so the local Ray head that jobs start is this module's), registry and Ray token, with the
    enrolment's models passed to the jobs by their environment variables; the head is stopped afterwards.

    Yields the registry root.
    """
    from training.jobs import LocalCluster

    root = tmp_path_factory.mktemp("enrolment-jobs")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("face_landmarker", "face_descriptor", "face_aligner", "selfie_segmentation"):
            patch.setenv(assets.ASSETS[name].env_var, str(assets.ensure(name)))
        patch.setenv("HEADCAST_CACHE_DIR", str(root / "cache"))
        patch.setenv("HEADCAST_REGISTRY", str(root / "registry"))
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(root / "ray_auth_token"))
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        try:
            yield str(root / "registry")
        finally:
            LocalCluster().stop()
