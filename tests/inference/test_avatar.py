"""AvatarTarget: the enrolment's crop framing rebuilt from coefficients, batching, feedback, compositing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from face3d.blendshapes import BLENDSHAPE_INDEX
from face3d.coefficients import Coefficients
from face3d.fit import fit_person
from face3d.framing import CropFraming
from face3d.nmfc import nmfc_topology
from inference import watermark
from inference.avatar import AvatarTarget
from inference.networks import Generator
from inference.protocol import DriveFrame, RenderError, RenderRequest
from inference.registry import TargetBundle, target_generator
from training.geometry import CropBox, fitted_frames, load_fit_config, nmfc_in_crop
from training.preprocess import PreprocessConfig, consecutive_runs, crop_boxes

SIZE = 128


def eager(generator: Generator):  # type: ignore[no-untyped-def]
    """Return the plainest runtime: G's frame and mask."""

    def run(nmfc: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        output = generator(nmfc, previous)
        return output.frame, output.mask

    return run


@pytest.fixture(scope="module")
def bundle(avatar_bundle: TargetBundle) -> TargetBundle:
    return avatar_bundle


@pytest.fixture(scope="module")
def target(bundle: TargetBundle) -> AvatarTarget:
    generator = target_generator(bundle)
    return AvatarTarget(bundle, eager(generator), size_px=SIZE, nmfc_frames=3, previous_frames=2, output_size=256,
                        device=torch.device("cpu"), warp_references=generator.config.warp_references)  # fmt: skip


def coefficients(
    seq: int, jaw_open: float = 0.0, rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> Coefficients:
    blendshapes = np.zeros(52, np.float32)
    blendshapes[BLENDSHAPE_INDEX["jawOpen"]] = jaw_open
    return Coefficients(seq, seq * 40, blendshapes, np.array(rotation, np.float32),
                        np.array([0.02, -0.01], np.float32), 0.0135)  # fmt: skip


def request(*frames: Coefficients, previous: np.ndarray | None = None, **kwargs: object) -> RenderRequest:
    return RenderRequest("woman", "s1", tuple(DriveFrame(c, None) for c in frames), previous, **kwargs)  # type: ignore[arg-type]


def test_the_crop_is_framed_as_enrolment_framed_it(sample_tracks, bundle: TargetBundle, target: AvatarTarget) -> None:  # type: ignore[no-untyped-def]
    """Driven by her own fitted coefficients, the woman's NMFC lands in the crop as preprocessing put it.

    Serving uses one crop side, that of all her frames taken as one run (to the pixel);
    preprocessing one per run (her two shots' sides differ from it by 4 % and 7 %), so the centre is
    checked per shot at the shot's own side: the served NMFC covers the enrolment's with IoU ≥ 0.85
    (preprocessing centres each crop on a 5-frame average of the landmark box, serving on the
    current mesh's box).
    """
    result = fit_person(sample_tracks.frames_of(0), load_fit_config())
    fitted = fitted_frames(result)
    weights = dict(zip(result.report.frame_indices, result.report.weights, strict=True))
    config = PreprocessConfig.load()
    size = (sample_tracks.source.width, sample_tracks.source.height)
    topology = nmfc_topology()
    face_frames = [f for f in sample_tracks.frames_of(0) if f.index in fitted]
    whole = crop_boxes(np.stack([f.landmarks_px()[:468] for f in face_frames]), config.crop_margin, 1)
    assert target.framing.side_widths * size[0] == pytest.approx(whole[0].side, abs=1.0)
    for run in consecutive_runs([f for f in sample_tracks.frames_of(0) if f.index in fitted]):
        boxes = crop_boxes(np.stack([f.landmarks_px()[:468] for f in run]), config.crop_margin, config.smooth_frames)
        run_target = AvatarTarget(bundle, target.runtime, size_px=SIZE, nmfc_frames=3,
                                  previous_frames=2, output_size=SIZE, device=torch.device("cpu"),
                                  framing=CropFraming(boxes[0].side / size[0], config.crop_margin))  # fmt: skip
        ious = []
        for frame, box in list(zip(run, boxes, strict=True))[::4]:
            fit = fitted[frame.index]
            enrolled = nmfc_in_crop(fit, size, CropBox(box.x0, box.y0, box.side), SIZE, topology).mask
            w = np.clip(weights[frame.index], 0, 1).astype(np.float32)
            drive = Coefficients(frame.index, frame.index * 40, w, fit.rotation.astype(np.float32),
                                 fit.translation.astype(np.float32), fit.scale)  # fmt: skip
            served = run_target.nmfc_window(request(drive))[-1].any(axis=2)
            ious.append((served & enrolled).sum() / (served | enrolled).sum())
        assert np.median(ious) >= 0.85, ious


def test_jaw_open_opens_the_mouth_in_the_crop_and_changes_the_frame(target: AvatarTarget) -> None:
    """jawOpen moves the inner lips apart (MediaPipe vertices 13 and 14) while the eye corners (33, 263)
    keep their distance; the NMFC and the rendered frame change with it. Her fitted jawOpen is weak
    (she hardly opens her mouth in the clip): the lips part by 0.7 px at 128², so ≥ 0.4 px is asked."""
    closed_px = target.crop_pixels(DriveFrame(coefficients(0, 0.0), None))
    opened_px = target.crop_pixels(DriveFrame(coefficients(0, 1.0), None))

    def gap(pixels: np.ndarray, a: int, b: int) -> float:
        return float(np.linalg.norm(pixels[a, :2] - pixels[b, :2]))

    assert gap(opened_px, 13, 14) > gap(closed_px, 13, 14) + 0.4
    assert gap(opened_px, 33, 263) == pytest.approx(gap(closed_px, 33, 263), rel=0.02)
    closed = target.render([request(coefficients(0, 0.0), want_nmfc=True)])[0]
    opened = target.render([request(coefficients(0, 1.0), want_nmfc=True)])[0]
    assert closed.nmfc is not None and opened.nmfc is not None
    assert not np.array_equal(closed.nmfc, opened.nmfc)
    assert not np.array_equal(closed.frame, opened.frame)


def test_a_batch_renders_what_each_request_renders_alone(target: AvatarTarget) -> None:
    first = request(coefficients(0, 0.2), coefficients(1, 0.4))
    rng = np.random.default_rng(0)
    second = request(coefficients(5, 0.8, (0.1, 0.2, 0.0)), previous=rng.integers(0, 255, (2, SIZE, SIZE, 3), np.uint8))
    together = target.render([first, second])
    alone = [target.render([first])[0], target.render([second])[0]]
    for batched, single in zip(together, alone, strict=True):
        assert batched.seq == single.seq and batched.timings_ms["batch"] == 2
        assert np.abs(batched.frame.astype(int) - single.frame.astype(int)).max() <= 1  # float rounding only
        np.testing.assert_array_equal(batched.face.shape, (SIZE, SIZE, 3))
        assert batched.frame.shape == (256, 256, 3)


def test_previous_faces_feed_the_generator_and_must_fit_its_size(bundle: TargetBundle) -> None:
    # A fresh G's heads are zero (it shows the warp whatever it is fed): give them weights, as training does.
    generator = target_generator(bundle)
    with torch.no_grad():
        for name, parameter in generator.decoder.named_parameters():
            if name.split(".")[0] in ("residual_head", "blend_head", "mask_head"):
                parameter.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
    target = AvatarTarget(bundle, eager(generator), size_px=SIZE, nmfc_frames=3, previous_frames=2, output_size=256,
                          device=torch.device("cpu"), warp_references=generator.config.warp_references)  # fmt: skip
    fresh = target.render([request(coefficients(0))])[0]
    # Textured faces: a flat one vanishes in the previous-frame encoder's first instance norm.
    faces = np.random.default_rng(1).integers(0, 255, (2, SIZE, SIZE, 3), np.uint8)
    fed = target.render([request(coefficients(0), previous=faces)])[0]
    assert np.abs(fresh.face.astype(int) - fed.face.astype(int)).mean() > 1
    with pytest.raises(RenderError, match="restart the session"):
        target.render([request(coefficients(0), previous=np.zeros((2, 64, 64, 3), np.uint8))])


def test_the_background_is_the_plate_or_the_chosen_colour(target: AvatarTarget) -> None:
    plate = target.render([request(coefficients(0))])[0]
    green = target.render([request(coefficients(0), background=(0, 255, 0))])[0]
    # Where the generator's mask is background, the colour shows through.
    corner_plate, corner_green = plate.frame[:8, :8].reshape(-1, 3), green.frame[:8, :8].reshape(-1, 3)
    assert corner_green[:, 1].mean() > corner_plate[:, 1].mean() + 20
    with pytest.raises(RenderError, match="three integers"):
        request(coefficients(0), background=(0, 300, 0))


def test_a_request_for_another_target_is_refused(target: AvatarTarget) -> None:
    other = RenderRequest("someone", "s1", (DriveFrame(coefficients(0), None),))
    with pytest.raises(RenderError, match="sent to target"):
        target.render([other])


def test_the_torch_rasteriser_frames_the_same_nmfc(bundle: TargetBundle, target: AvatarTarget) -> None:
    """Serving on a GPU rasterises with torch: the same crop's NMFC, pixel for pixel but for depth ties."""
    from inference.raster_torch import numpy_rasteriser

    on_torch = AvatarTarget(bundle, target.runtime, size_px=SIZE, nmfc_frames=3, previous_frames=2, output_size=256,
                            device=torch.device("cpu"), rasterise=numpy_rasteriser("torch", "cpu"),
                            warp_references=len(bundle.references or ()), warp_on_device=True)  # fmt: skip
    window = request(coefficients(0, 0.3, (0.1, 0.3, 0.0)), coefficients(1, 0.6, (0.1, 0.35, 0.0)))
    cpu, torch_nmfc = target.nmfc_window(window), on_torch.nmfc_window(window)
    assert (cpu == torch_nmfc).all(axis=-1).mean() >= 0.995
    # The warp's fields on the torch rasteriser give the same warp input as face3d's on the CPU.
    mesh = target.crop_pixels(window.frames[-1])[None]
    torch.testing.assert_close(on_torch.warp_inputs(mesh), target.warp_inputs(mesh), atol=2e-3, rtol=0)


def test_the_avatar_shows_the_targets_own_face_warped_to_the_driving_pose(target: AvatarTarget) -> None:
    """With a G whose heads are still at zero, the served face is the references' warp: inside the
    retargeted mesh it matches the nearest reference frame's colours, not the NMFC's."""
    assert target.references is not None
    result = target.render([request(coefficients(0, 0.0, (0.0, 0.3, 0.0)))])[0]
    face = result.face.astype(np.float64)
    mesh = target.crop_pixels(request(coefficients(0, 0.0, (0.0, 0.3, 0.0))).frames[-1])
    from face3d.raster import rasterise
    from face3d.warp import warp_topology

    inside = rasterise(mesh, warp_topology().triangles, (SIZE, SIZE)).mask
    skin = np.median(target.references.images[:, :, :][target.references.masks > 0], axis=0)
    assert np.abs(np.median(face[inside], axis=0) - skin).max() < 40  # her skin tone, channel by channel
    assert "warp" in result.timings_ms and result.timings_ms["warp"] > 0


def test_a_bundle_without_references_is_served_from_its_nmfc_with_a_notice(
    bundle: TargetBundle, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses
    import logging

    from inference.networks import GeneratorConfig

    config = GeneratorConfig.model_validate({**bundle.metadata.training["model_config"]["generator"],
                                             "warp_references": 0})  # fmt: skip
    torch.manual_seed(0)
    old = Generator(config)
    old.convert_adain_to_instance_norm(torch.randn(config.identity_dim))
    older = dataclasses.replace(bundle, references=None)
    with caplog.at_level(logging.INFO, logger="inference.avatar"):
        served = AvatarTarget(older, eager(old.eval()), size_px=SIZE, nmfc_frames=3, previous_frames=2,
                              output_size=256, device=torch.device("cpu"))  # fmt: skip
    assert "no reference frames" in caplog.text
    assert served.render([request(coefficients(0))])[0].frame.shape == (256, 256, 3)
    # A warp generator without the frames it warps is refused, saying what to do.
    with pytest.raises(RenderError, match="enrol it again"):
        AvatarTarget(older, eager(old), size_px=SIZE, nmfc_frames=3, previous_frames=2, output_size=256,
                     device=torch.device("cpu"), warp_references=4)  # fmt: skip


def test_the_visible_badge_marks_every_frame_when_asked(bundle: TargetBundle, target: AvatarTarget) -> None:
    from inference.avatar import draw_badge

    generator = target_generator(bundle)
    badged = AvatarTarget(bundle, eager(generator), size_px=SIZE, nmfc_frames=3, previous_frames=2, output_size=256,
                          device=torch.device("cpu"), warp_references=generator.config.warp_references,
                          badge=True)  # fmt: skip
    plain = target.render([request(coefficients(0))])[0].frame
    marked = badged.render([request(coefficients(0))])[0].frame
    changed = np.abs(marked.astype(int) - plain.astype(int)).sum(axis=2) > 0
    rows, cols = np.nonzero(changed)
    # Only the lower left corner changed: a dark box with white text, about a third of the frame wide.
    assert rows.min() > 256 * 0.8 and cols.max() < 256 * 0.5 and cols.max() - cols.min() > 256 * 0.25
    box = marked[changed]
    assert (box.max(axis=1) > 230).mean() > 0.05 and (box.max(axis=1) < 40).mean() > 0.3
    again = plain.copy()
    draw_badge(again)
    np.testing.assert_array_equal(again, marked)  # the app's frames carry exactly draw_badge's label


def test_every_frame_carries_the_mark_of_its_target_and_session(target: AvatarTarget) -> None:
    other_session = RenderRequest("woman", "9c1e77", (DriveFrame(coefficients(0), None),), None)
    first, other = target.render([request(coefficients(0)), other_session])
    assert watermark.read([first.frame]).mark == watermark.Mark.of("woman", "s1")
    assert watermark.read([other.frame]).mark == watermark.Mark(watermark.target_tag("woman"), 0x9C1E)
