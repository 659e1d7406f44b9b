"""Orchestration of the geometry steps for the CLI: fit a person from tracks, render NMFC videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from base.files import write_json_atomic
from edge.annotate import VideoWriter
from edge.capture import VideoFile
from edge.tracks import Tracks
from face3d.errors import FitError
from face3d.fit import FitConfig, FitResult, fit_person
from face3d.nmfc import nmfc_topology
from face3d.person import PersonModel, write_summary_png
from face3d.topology import load_canonical_mesh
from training.geometry import FittedFrame, fitted_frames, load_fit_config, nmfc_frame

PERSON_FILE = "person.npz"
PERSON_IMAGE = "person.png"
FIT_REPORT = "fit.json"
SIDE_BY_SIDE = "nmfc.mp4"

__all__ = [
    "FittedFrame",
    "choose_person",
    "fit_tracks",
    "fitted_frames",
    "load_fit_config",
    "nmfc_frame",
    "write_fit",
    "write_side_by_side",
]


def choose_person(tracks: Tracks, person: int | None) -> int:
    """Return the person to use: the one asked for, or the one with the most face frames."""
    known = [p.id for p in tracks.people]
    if person is None:
        if not known:
            raise FitError("the tracks group no people (tracked with --no-identities?): track again with identities")
        return tracks.main_person()
    if person not in known:
        raise FitError(f"there is no person {person} in these tracks; people: {known or 'none'}")
    return person


def fit_tracks(tracks: Tracks, person: int, config: FitConfig, prior: PersonModel | None) -> FitResult:
    """Return the fit of one person's frames of a tracked recording."""
    return fit_person(tracks.frames_of(person), config, prior)


def write_fit(result: FitResult, person: int, out_dir: Path) -> dict[str, object]:
    """Write person.npz, person.png and fit.json (per-frame residuals, skipped frames); return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.model.save(out_dir / PERSON_FILE)
    write_summary_png(result.model, load_canonical_mesh().triangles, out_dir / PERSON_IMAGE)
    report = result.report
    summary: dict[str, object] = {
        "person": person,
        "frames_fitted": len(report.frame_indices),
        "residual_cm_mean": round(float(np.mean(report.residual_cm)), 4),
        "residual_cm_median": round(float(np.median(report.residual_cm)), 4),
        "residual_cm_max": round(float(np.max(report.residual_cm)), 4),
        "energy_per_round": [round(e, 4) for e in report.energy],
        "residual_cm": {int(i): round(float(r), 4) for i, r in zip(report.frame_indices, report.residual_cm,
                                                                    strict=True)},
        "skipped": [{"frame": i, "reason": why} for i, why in report.skipped],
    }  # fmt: skip
    write_json_atomic(out_dir / FIT_REPORT, summary)
    return summary


def write_side_by_side(video: str | Path, result: FitResult, out_path: Path,
                       on_frame: Callable[[int], None] | None = None) -> Path:  # fmt: skip
    """Write frame | NMFC | overlay for every frame of `video` (NMFC black where the person is absent)."""
    topology = nmfc_topology()
    by_index = fitted_frames(result)
    with VideoFile(video) as source:
        width, height = source.info.width, source.info.height
        with VideoWriter(out_path, 3 * width, height, source.info.fps) as writer:
            for frame in source:
                fitted = by_index.get(frame.index)
                nmfc = np.zeros_like(frame.rgb) if fitted is None else nmfc_frame(fitted, (width, height), topology)
                face = nmfc.any(axis=2, keepdims=True)
                overlay = np.where(face, (0.45 * frame.rgb + 0.55 * nmfc).astype(np.uint8), frame.rgb)
                writer.write(np.concatenate([frame.rgb, nmfc, overlay], axis=1))
                if on_frame is not None:
                    on_frame(frame.index)
    return out_path
