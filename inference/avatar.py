"""One target's avatar frames from render requests: retarget → NMFC in the face crop → generator → composite.

`AvatarTarget` is the wrapper that owns a served target (its generator runtime, PersonModel, pose
map, background plate); `render` is the pipeline for a batch of requests of that target.

Framing. The generator was trained on square face crops (training/preprocess.py): the crop's
centre is the landmarks' box centre and its side a margin × the face's extent, constant over a
run so the face keeps its size. Serving rebuilds the same frame from the retargeted mesh alone: the
centre is the projected mesh's box centre in this frame, the side the one the enrolment measured
over its whole recording (the bundle's `training.crop.side_widths`, in image widths: margin × the
median landmark extent) — fixed, so a source leaning in makes the target's face grow in the crop,
as it did in the target's recording. Crop coordinates do not depend on the image's pixel size (a
box measured in image widths scales away), so no enrolment image size is needed. A bundle without
that record is framed from its neutral face's extent at its usual scale (on the sample clip's
woman 8 % larger than measured).

The background plate is the enrolment's median background *in crop coordinates* (training/enrol.py),
so compositing happens in the crop: frame = mask · ỹ + (1 − mask) · plate, then resized to the
output size.

Warp. A generator with warp references gets, beside the NMFC window, the bundle's reference frames
warped to the frame being rendered along the mesh (inference/warp.py): the retargeted mesh in this
crop against each reference's fitted mesh in its own crop. A bundle without references (enrolled
before the warp) carries a generator without warp inputs and is served as it was, with a notice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.nn import functional

import configs
from face3d.camera import project_to_image
from face3d.errors import FitError
from face3d.framing import CropFraming
from face3d.nmfc import NmfcTopology, nmfc_topology, render_nmfc_px
from face3d.person import PersonModel
from face3d.retarget import TargetPoseMap, retarget
from face3d.warp import WarpTopology, warp_topology
from inference import watermark
from inference.protocol import DriveFrame, RenderError, RenderRequest, RenderResult
from inference.registry import TargetBundle
from inference.warp import ReferenceFrames, affinities, fields_cpu, warp_fields_batch, warp_input

logger = logging.getLogger(__name__)

FrameRuntime = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
# The nominal image the mesh is projected into before cropping; any size gives the same crop.
_NOMINAL_WIDTH_PX = 1000.0


def replica_name() -> str:
    """Return this process's name in results and logs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def served_framing(bundle: TargetBundle) -> CropFraming:
    """Return the framing the bundle's enrolment used; configs/preprocess.yaml's around the neutral face otherwise."""
    record = bundle.metadata.training.get("crop")
    if record:
        return CropFraming.from_json(record)
    section = configs.load("preprocess")
    margin = float(section["crop_margin"])
    return CropFraming(neutral_crop_side_widths(bundle.person, margin), margin, section["nmfc_mode"])


def neutral_crop_side_widths(person: PersonModel, margin: float) -> float:
    """Return a crop side in image widths: margin × the neutral face's larger extent at the person's usual scale."""
    extent_cm = float(np.ptp(person.neutral[:, :2], axis=0).max())
    return margin * extent_cm * float(person.pose_mean[2])


class AvatarTarget:
    """A served target: renders batches of its sessions' requests into composited frames."""

    def __init__(
        self,
        bundle: TargetBundle,
        runtime: FrameRuntime,
        *,
        size_px: int,
        nmfc_frames: int,
        previous_frames: int,
        output_size: int,
        device: torch.device,
        framing: CropFraming | None = None,
        rasterise: Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.uint8]] | None = None,
        warp_references: int = 0,
        warp_on_device: bool = False,
        badge: bool = False,
    ) -> None:
        self.target_id = bundle.metadata.target_id
        self._target_tag = watermark.target_tag(self.target_id)  # what every frame's provenance mark names
        self.badge = badge
        self.version = bundle.version
        self.person = bundle.person
        self.runtime = runtime
        self.size_px = size_px
        self.nmfc_frames = nmfc_frames
        self.previous_frames = previous_frames
        self.output_size = output_size
        self.device = device
        self.framing = framing or served_framing(bundle)
        try:
            self.pose_map = TargetPoseMap(bundle.person)
        except FitError as error:
            raise RenderError(f"target {self.target_id!r} cannot be driven: {error}") from None
        self._topology: NmfcTopology = nmfc_topology()
        self._rasterise = rasterise or self._rasterise_cpu
        plate = torch.from_numpy(np.ascontiguousarray(bundle.background)).permute(2, 0, 1).float()
        if plate.shape[-2:] != (size_px, size_px):
            plate = functional.interpolate(plate[None], size=(size_px, size_px), mode="bilinear", antialias=True)[0]
        self._plate = (plate / 127.5 - 1).to(device)  # [−1, 1], like the generator's frames
        self.references: ReferenceFrames | None = None
        self.warp_on_device = warp_on_device
        if warp_references:
            if bundle.references is None or len(bundle.references) != warp_references:
                found = 0 if bundle.references is None else len(bundle.references)
                raise RenderError(f"target {self.target_id!r}: its generator blends {warp_references} warped "
                                  f"reference frames but the bundle holds {found}; enrol it again")  # fmt: skip
            if bundle.references.size_px != size_px:
                raise RenderError(f"target {self.target_id!r}: reference frames are {bundle.references.size_px} px, "
                                  f"its generator renders {size_px} px; enrol it again")  # fmt: skip
            self.references = bundle.references
            self._warp_topology: WarpTopology = warp_topology()
            images, masks = bundle.references.tensors(device)
            self._reference_images, self._reference_masks = images, masks
        elif bundle.references is None:
            logger.info("target %r has no reference frames (bundle enrolled before the warp): served from its "
                        "NMFC alone; enrol it again for the warped avatar", self.target_id)  # fmt: skip

    # --- NMFC --------------------------------------------------------------------------------------------------

    def crop_pixels(self, frame: DriveFrame) -> npt.NDArray[np.float64]:
        """Return the (468, 3) positions of the retargeted mesh in the face crop's pixels (x, y, depth)."""
        pose = self.pose_map.apply(frame.pose) if frame.pose is not None else None
        mesh = retarget(self.person, frame.coefficients, pose=pose)
        image = (int(_NOMINAL_WIDTH_PX), int(_NOMINAL_WIDTH_PX))
        pixels = project_to_image(mesh.vertices, mesh.rotation, mesh.translation, mesh.scale, image)
        side = self.framing.side_widths * _NOMINAL_WIDTH_PX
        centre = (pixels[:, :2].min(axis=0) + pixels[:, :2].max(axis=0)) / 2
        scale = self.size_px / side
        pixels[:, :2] = (pixels[:, :2] - (centre - side / 2)) * scale
        pixels[:, 2] *= scale
        return pixels

    def _rasterise_cpu(self, pixels: npt.NDArray[np.float64], size_px: int) -> npt.NDArray[np.uint8]:
        return render_nmfc_px(pixels, (size_px, size_px), self._topology, self.framing.nmfc_mode).to_uint8()

    def nmfc_window(self, request: RenderRequest) -> npt.NDArray[np.uint8]:
        """Return the (nmfc_frames, S, S, 3) NMFC stack of a request, oldest first (the first repeated at a start)."""
        frames = list(request.frames[-self.nmfc_frames :])
        frames = [frames[0]] * (self.nmfc_frames - len(frames)) + frames
        return np.stack([self._rasterise(self.crop_pixels(frame), self.size_px) for frame in frames])

    # --- the warp ----------------------------------------------------------------------------------------------

    def warp_inputs(self, meshes: npt.NDArray[np.float64]) -> Tensor:
        """Return G's warp input (B, 5·K, S, S) on the device for B driven meshes (B, 468, 3) in crop pixels."""
        references = self.references
        assert references is not None
        affinity = torch.from_numpy(np.stack([affinities(mesh, references) for mesh in meshes])).to(self.device)
        if self.warp_on_device:
            batch = len(meshes)
            driven = torch.from_numpy(np.asarray(meshes, dtype=np.float32)).to(self.device)
            ref_px = torch.from_numpy(references.vertices_px).to(self.device)[None].expand(batch, -1, -1, -1)
            visible = torch.from_numpy(references.visible).to(self.device)[None].expand(batch, -1, -1)
            grid, validity = warp_fields_batch(driven, ref_px, visible, self.size_px, self._warp_topology)
        else:
            fields = [fields_cpu(mesh, references, self.size_px, self._warp_topology) for mesh in meshes]
            grid = torch.from_numpy(np.stack([g for g, _ in fields])).to(self.device)
            validity = torch.from_numpy(np.stack([v for _, v in fields])).to(self.device)
        return warp_input(self._reference_images, self._reference_masks, grid, validity, affinity)

    # --- the pipeline ------------------------------------------------------------------------------------------

    def _previous(self, request: RenderRequest) -> npt.NDArray[np.float32]:
        """Return (previous_frames, 3, S, S) float in [−1, 1]: the request's faces, mid-grey where missing."""
        out = np.zeros((self.previous_frames, 3, self.size_px, self.size_px), np.float32)
        if request.previous is None or self.previous_frames == 0:
            return out
        faces = np.asarray(request.previous)[-self.previous_frames :]
        if faces.shape[1:3] != (self.size_px, self.size_px):
            raise RenderError(f"previous faces are {faces.shape[1]}×{faces.shape[2]}, target {self.target_id!r} "
                              f"renders {self.size_px}×{self.size_px}: restart the session")  # fmt: skip
        out[self.previous_frames - len(faces) :] = faces.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
        return out

    @torch.inference_mode()
    def render(self, requests: Sequence[RenderRequest]) -> list[RenderResult]:
        """Return one composited frame per request, all rendered in one generator call."""
        if not requests:
            return []
        for request in requests:
            if request.target_id != self.target_id:
                raise RenderError(f"request for {request.target_id!r} sent to target {self.target_id!r}")
        began = time.perf_counter()
        windows = np.stack([self.nmfc_window(request) for request in requests])  # (B, n, S, S, 3)
        previous = np.stack([self._previous(request) for request in requests])
        batch = len(requests)
        nmfc = torch.from_numpy(windows).to(self.device).permute(0, 1, 4, 2, 3).reshape(batch, -1, *windows.shape[2:4])
        nmfc = nmfc.float() / 255
        nmfc_ms = (time.perf_counter() - began) * 1000 / len(requests)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        if self.references is not None:
            meshes = np.stack([self.crop_pixels(request.frames[-1]) for request in requests])
            nmfc = torch.cat([nmfc, self.warp_inputs(meshes)], dim=1)
            timings["warp"] = (time.perf_counter() - started) * 1000 / len(requests)
            started = time.perf_counter()
        frames, masks = self.runtime(
            nmfc, torch.from_numpy(previous).reshape(batch, -1, *previous.shape[-2:]).to(self.device)
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        generator_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        frames = frames.float().clamp(-1, 1)
        backgrounds = torch.stack([self._background(request) for request in requests])
        composite = masks.float() * frames + (1 - masks.float()) * backgrounds
        if self.output_size != self.size_px:
            composite = functional.interpolate(composite, size=(self.output_size,) * 2, mode="bilinear",
                                      antialias=self.output_size < self.size_px)  # fmt: skip
        out = _to_uint8(composite)
        for frame, request in zip(out, requests, strict=True):
            mark = watermark.Mark(self._target_tag, watermark.session_tag(request.session_id))
            watermark.embed(frame, mark)  # provenance, always
            if self.badge:  # drawn over the mark: the label stays crisp, the mark is read from the rest
                draw_badge(frame)
        faces = _to_uint8(frames)
        composite_ms = (time.perf_counter() - started) * 1000 / batch
        name = replica_name()
        return [
            RenderResult(
                seq=request.seq,
                frame=out[i],
                face=faces[i],
                nmfc=windows[i, -1] if request.want_nmfc else None,
                timings_ms={
                    "nmfc": nmfc_ms,
                    **timings,
                    "generator": generator_ms,
                    "composite": composite_ms,
                    "batch": batch,
                },
                replica=name,
            )
            for i, request in enumerate(requests)
        ]

    def _background(self, request: RenderRequest) -> Tensor:
        if request.background is None:
            return self._plate
        colour = torch.tensor(request.background, dtype=torch.float32, device=self.device) / 127.5 - 1
        return colour.view(3, 1, 1).expand_as(self._plate)


BADGE_TEXT = "SYNTHETIC"


def draw_badge(frame: npt.NDArray[np.uint8]) -> None:
    """Draw the visible "SYNTHETIC" label into the lower left corner of an (H, W, 3) RGB frame, in place.

    White text on a dark box, sized to the frame (about a third of its width), so that it stays legible
    after the video is scaled down and coded."""
    import cv2

    height, width = frame.shape[:2]
    scale = width / 3 / cv2.getTextSize(BADGE_TEXT, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)[0][0]
    thickness = max(1, round(2 * scale))
    (text_w, text_h), baseline = cv2.getTextSize(BADGE_TEXT, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_h // 3)
    top = height - text_h - baseline - 3 * pad
    cv2.rectangle(frame, (pad, top), (pad + text_w + 2 * pad, height - pad), (24, 24, 24), cv2.FILLED)
    cv2.putText(frame, BADGE_TEXT, (2 * pad, height - baseline - 2 * pad), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)  # fmt: skip


def _to_uint8(images: Tensor) -> npt.NDArray[np.uint8]:
    """Return (B, H, W, 3) uint8 RGB from (B, 3, H, W) floats in [−1, 1]."""
    scaled = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(scaled.permute(0, 2, 3, 1).cpu().numpy())
