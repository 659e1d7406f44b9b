"""The provenance mark on real frames: it reads back after the gateway's VP8, libx264, half size and a
screen recording's crop; unmarked frames read as "no mark"; `headcast verify` says so, with exit codes.

The hosts are the sample clip's frames (real faces, hair, a background), scaled to the composited
frame's 256 px. Detection rates and the false-positive rate over more frames: ops/bench/watermark.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from aiortc.codecs.vpx import MIN_BITRATE

from edge.capture import VideoFile
from headcast import provenance, recode
from inference import watermark

MARK = watermark.Mark.of("woman", "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b")
SECOND = 25  # frames in a one-second window at the clip's rate


@pytest.fixture(scope="module")
def hosts(sample_clip: Path) -> list[npt.NDArray[np.uint8]]:
    """Return the clip's 270 frames at 256 × 256."""
    with VideoFile(sample_clip) as video:
        return [
            np.asarray(cv2.resize(frame.rgb, (256, 256), interpolation=cv2.INTER_AREA), np.uint8) for frame in video
        ]


def marked(frames: list[npt.NDArray[np.uint8]], mark: watermark.Mark = MARK) -> list[npt.NDArray[np.uint8]]:
    out = [frame.copy() for frame in frames]
    for frame in out:
        watermark.embed(frame, mark)
    return out


def write_video(frames: list[npt.NDArray[np.uint8]], path: Path, crf: int = 23) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=SECOND)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_the_mark_costs_little_and_reads_back_exactly_from_one_frame(hosts: list[npt.NDArray[np.uint8]]) -> None:
    frames = marked(hosts[:10])
    error = np.mean([(m.astype(float) - h) ** 2 for m, h in zip(frames, hosts, strict=False)])
    assert 10 * np.log10(255**2 / error) >= 40  # PSNR in dB
    for frame in frames:
        reading = watermark.read([frame])
        assert reading.mark == MARK and reading.confidence > 0.95, reading


@pytest.mark.parametrize("bitrate", [MIN_BITRATE, 500_000])
def test_a_second_of_the_gateways_vp8_names_target_and_session(
    hosts: list[npt.NDArray[np.uint8]], bitrate: int
) -> None:
    received = recode.vp8(marked(hosts[: 3 * SECOND]), bitrate)
    readings = list(watermark.read_windows(received, SECOND))
    assert [r.mark for r in readings] == [MARK] * 3, [(r.pilot_z, r.mark) for r in readings]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: recode.x264(f, crf=28), id="libx264-crf28"),
        pytest.param(recode.half, id="half-size"),
        pytest.param(recode.screen_crop, id="screen-crop"),
    ],
)
def test_a_second_of_recoded_video_still_names_them(hosts: list[npt.NDArray[np.uint8]], change) -> None:  # type: ignore[no-untyped-def]
    changed = change(marked(hosts[SECOND : 3 * SECOND]))
    readings = list(watermark.read_windows(changed, SECOND))
    assert [r.mark for r in readings] == [MARK] * 2, [(r.pilot_z, r.crop, r.mark) for r in readings]


def test_unmarked_frames_read_as_no_mark(hosts: list[npt.NDArray[np.uint8]]) -> None:
    singles = [watermark.read([frame]) for frame in hosts]
    assert not [r for r in singles if r.mark is not None]
    assert max(r.pilot_z for r in singles) < watermark.MIN_PILOT_Z
    windows = list(watermark.read_windows(recode.x264(hosts), SECOND))
    assert not [r for r in windows if r.mark is not None]


def test_the_session_tag_is_the_start_of_the_gateways_session_id() -> None:
    assert watermark.session_tag("3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b") == 0x3F2A
    assert watermark.session_tag("s1") == watermark.session_tag("s1") != watermark.session_tag("s2")
    assert 0 <= watermark.target_tag("woman") < 2**16 and MARK.payload()[:2] == watermark.target_tag("woman").to_bytes(
        2
    )


def headcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headcast", *args], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def test_verify_names_the_target_or_says_no_mark(hosts: list[npt.NDArray[np.uint8]], tmp_path: Path) -> None:
    video = tmp_path / "recorded.mp4"
    write_video(marked(hosts[: 4 * SECOND]), video, crf=28)
    found = provenance.verify(video, known_targets=["man", "woman"])
    assert (found.mark, found.target, found.marked, found.windows) == (MARK, "woman", 4, 4)
    result = headcast("verify", str(video), "--registry", str(tmp_path / "empty-registry"))
    assert result.returncode == 0, result.stderr
    assert f"target tag {MARK.target_tag:04x}" in result.stdout and "session 3f2a…" in result.stdout
    assert "read in 4 of 4 one-second windows" in result.stdout
    # A video cut together from two sessions: both are named, the longer first.
    spliced = tmp_path / "spliced.mp4"
    write_video(marked(hosts[: 3 * SECOND]) + marked(hosts[3 * SECOND : 4 * SECOND], watermark.Mark.of("man", "b07c")),
                spliced)  # fmt: skip
    found = provenance.verify(spliced, known_targets=["man", "woman"])
    assert found.mark == MARK and found.others == {watermark.Mark.of("man", "b07c"): 1}
    plain = tmp_path / "plain.mp4"
    write_video(hosts[: 2 * SECOND], plain)
    result = headcast("verify", str(plain))
    assert result.returncode == 3 and "no mark" in result.stdout, result.stdout + result.stderr
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    result = headcast("verify", str(broken))
    assert result.returncode == 1 and "not a video FFmpeg can read" in result.stderr
