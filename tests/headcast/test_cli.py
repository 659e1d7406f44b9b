"""The `headcast` command as a user runs it: real subprocesses, exit codes and messages."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
import pytest

from base import assets
from base.cache import CACHE_ENV, cache_dir


def headcast(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headcast", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def headcast_while_it_reports(*args: str, silence_s: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a long command to its end, however slow the machine, failing only if it falls silent.

    The command's console lines are its progress (stages, tenths of training steps): a run that writes
    nothing for `silence_s` is hung, not slow, and is killed with what it wrote so far in the failure."""
    process = subprocess.Popen([sys.executable, "-m", "headcast", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
    heard = threading.Event()

    def drain(name: str, stream: IO[str]) -> None:
        for line in stream:
            lines[name].append(line)
            heard.set()

    readers = [threading.Thread(target=drain, args=(name, getattr(process, name)), daemon=True) for name in lines]
    for reader in readers:
        reader.start()
    heard_at = time.monotonic()
    while any(reader.is_alive() for reader in readers):  # both streams close when the command exits
        if heard.wait(1.0):
            heard.clear()
            heard_at = time.monotonic()
        elif time.monotonic() - heard_at > silence_s:
            process.kill()
            process.wait()
            pytest.fail(f"headcast {' '.join(args)} wrote nothing for {silence_s:.0f} s; it wrote:\n"
                        + "".join(lines["stderr"][-40:]) + "".join(lines["stdout"][-40:]))  # fmt: skip
    process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(lines["stdout"]),
                                       "".join(lines["stderr"]))  # fmt: skip


@pytest.mark.parametrize("command", [[], ["track"], ["demo"], ["assets"], ["assets", "list"],
                                     ["assets", "fetch"], ["assets", "path"]])  # fmt: skip
def test_every_command_has_help(command: list[str]) -> None:
    result = headcast(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def command_paths() -> list[list[str]]:
    """Return every command of the CLI as its words (groups too), e.g. ["jobs", "logs"]."""
    import typer.main

    from headcast.cli import app

    found: list[list[str]] = []

    def walk(command: Any, words: list[str]) -> None:  # typer's own (vendored) click Command and Group
        found.append(words)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


@pytest.mark.parametrize("width", [60, 100])
def test_help_texts_are_paragraphs_wrapped_to_the_terminal(width: int) -> None:
    """No line of a description ends early unless its paragraph does: docstrings' own line breaks do not
    survive into --help, where they would break sentences in the middle."""
    from typer.testing import CliRunner

    from headcast.cli import app

    runner = CliRunner()
    for words in command_paths():
        result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": str(width)})
        assert result.exit_code == 0, (words, result.output)
        lines = result.output.splitlines()
        start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
        end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
        description = [line.rstrip() for line in lines[start:end]]
        for line, following in itertools.pairwise(description):
            if line.strip() and following.strip():
                room = width - 2 - len(line)  # the text's one-space margins
                assert len(following.split()[0]) + 1 > room, f"`headcast {' '.join(words)} --help` breaks: {line!r}"


def test_every_command_says_which_assets_it_uses() -> None:
    """Each command fetches its assets before it starts (base.assets.COMMAND_ASSETS): a new command needs a list."""
    paths = command_paths()
    for words in (w for w in paths if not any(other[: len(w)] == w and other != w for other in paths)):
        name = " ".join(words)
        assert name in assets.COMMAND_ASSETS or words[0] in assets.COMMAND_ASSETS, f"no asset list for {name!r}"


def test_assets_list_shows_every_asset() -> None:
    result = headcast("assets", "list")
    assert result.returncode == 0
    for name in ("face_landmarker", "selfie_segmentation", "face_descriptor", "face_aligner", "sample_clip"):
        assert name in result.stdout


def test_assets_path_of_an_unknown_asset_is_a_clear_error() -> None:
    result = headcast("assets", "path", "nonsense")
    assert result.returncode == 1
    assert "unknown asset 'nonsense'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [None, b"plain text, not a video\n" * 10])
def test_track_refuses_a_bad_file_without_a_traceback(tmp_path: Path, content: bytes | None) -> None:
    video = tmp_path / "input.mp4"
    if content is not None:
        video.write_bytes(content)
    result = headcast("track", str(video), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "tracks.npz").exists()


@pytest.mark.parametrize("verbose", [False, True])
def test_the_libraries_logs_go_to_the_log_file_and_verbose_shows_them(
    tmp_path: Path, sample_clip: Path, verbose: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "short.mp4"
    with av.open(str(sample_clip)) as source, av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 720, 528, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index >= 20:  # frames 1-19: the woman's first shot
                break
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(stream.encode())
    cache = tmp_path / "cache"
    (cache / "assets").mkdir(parents=True)
    for name in assets.for_command("track"):  # the cache is this test's own: its log folder too
        (cache / "assets" / assets.ASSETS[name].filename).symlink_to(assets.ensure(name))
    monkeypatch.setenv(CACHE_ENV, str(cache))
    args = ["track", str(clip), "--out", str(tmp_path / "out"), "--no-identities", "--no-video"]
    result = headcast(*args, *(["--verbose"] if verbose else []))
    assert result.returncode == 0, result.stderr[-2000:]
    log = cache / "logs" / "track.log"
    assert f"logs: {log}" in result.stderr
    native = "Created TensorFlow Lite XNNPACK delegate"  # MediaPipe's C++ side, on descriptor 2
    assert native in log.read_text() if not verbose else native in result.stderr
    if not verbose:
        assert native not in result.stderr and "W0000" not in result.stderr
    assert "frames with a face" in result.stdout  # the results stay on the console


def test_track_camera_that_does_not_exist(tmp_path: Path) -> None:
    result = headcast("track", "camera:77", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "camera 77 could not be opened" in result.stderr.replace("\n", " ")


def test_demo_drives_a_live_avatar_through_the_real_stack(tmp_path: Path, sample_clip: Path) -> None:
    """`headcast demo`: tracking, the woman enrolled once, then local Ray + Serve + the gateway + the edge."""
    out = tmp_path / "demo"
    # A 20-step base keeps the first enrolment short; its cache is cleared so this run enrols.
    shutil.rmtree(cache_dir() / "demo" / "cpu-base-20", ignore_errors=True)
    result = headcast_while_it_reports("demo", "--out", str(out), "--base-steps", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    # A quiet console: Ray's banner and its shutdown chatter, MediaPipe's native lines, go to the log file.
    log = Path(re.search(r"^logs: (\S+)", result.stderr, re.MULTILINE).group(1))  # type: ignore[union-attr]
    for noise in ("Started a local Ray instance", "(raylet)", "ray.kill", "Traceback", "W0000", "INFO "):
        assert noise not in result.stderr + result.stdout, noise
    assert "Started a local Ray instance" in log.read_text()
    # Minutes of training show their progress: each stage at its tenths of steps, with the time left.
    for stage in ("pretraining", "fine-tuning"):
        assert re.search(rf"{stage}: step \d+/\d+, about \d+ min left", result.stderr), result.stderr
    assert re.search(r"round trip +p50 \d+\.\d ms, p95 \d+\.\d ms", result.stdout), result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 270 and summary["face_fraction"] >= 0.95
    assert len(summary["people"]) == 2 and len(summary["shots"]) == 5
    assert "person 0" in result.stdout and "annotated" in result.stdout
    # The annotated video decodes, has every frame, and differs from the source where the face is drawn.
    with av.open(str(out / "annotated.mp4")) as annotated, av.open(str(sample_clip)) as original:
        pairs = list(zip(annotated.decode(video=0), original.decode(video=0), strict=True))
    assert len(pairs) == 270
    drawn, source = (f.to_ndarray(format="rgb24").astype(int) for f in pairs[40])
    assert drawn.shape == source.shape == (528, 720, 3)
    assert np.abs(drawn - source).mean() > 2.0, "landmarks and axes are drawn on the frame"
    # The man (person 1) drives the woman's avatar: every frame sent over the compact codec, rendered
    # by the Serve app, received as video by a viewer. How many the CPU renders depends on the machine;
    # what it cannot reach in time only newest-wins drops ("superseded"), never a frame lost or refused.
    report = json.loads((out / "report.json").read_text())
    assert (report["target"], report["source_person"], report["target_cached"]) == ("woman", 1, False)
    assert report["frames_sent"] == report["frames_streamed"] == summary["people"][1]["frames"]
    assert report["uplink_bytes_per_frame"] <= 33, "the compact uplink budget (≤ 8 kbit/s at 30 fps)"
    assert report["round_trip_ms"]["measured"] >= 20 and report["viewer_frames"] >= 20
    dropped = report["dropped"]
    assert dropped["offline"] == dropped["bad"] == dropped["rate"] == 0, dropped
    assert report["gateway_rendered"] + dropped["superseded"] + dropped["stale"] <= report["frames_sent"]
    assert {"queue", "render", "nmfc", "warp", "generator", "composite"} <= set(report["gateway_stage_ms_p50"])
    with av.open(str(out / "avatar.mp4")) as video:
        avatar = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(avatar) == report["viewer_frames"] and avatar[0].shape == (256, 256, 3)
    # After the gateway's VP8 and the recording's H.264 it still names her and the session: in every second
    # in the demo runs, in 4 of 6 in one run under the test suite's load (the viewer's VP8 lowers its rate).
    provenance = report["provenance"]
    marked, windows = provenance["marked_windows"], provenance["windows"]
    assert provenance["target"] == "woman" and 2 * marked >= windows >= 1, provenance
    assert re.search(r"provenance +target 'woman', session [0-9a-f]{4}…", result.stdout), result.stdout
    with av.open(str(out / "side-by-side.mp4")) as video:
        panels = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(panels) == report["side_by_side_frames"] > 0 and panels[0].shape[0] == 256
    # source | NMFC | warped reference | avatar: her NMFC, her own frames warped, and the avatar built on them.
    nmfc, warped, served = (panels[len(panels) // 2][:, -256 * k :][:, :256] for k in (3, 2, 1))
    assert (nmfc.max(axis=2) > 40).mean() > 0.1, "her NMFC is drawn in the second panel"
    assert warped.std() > 20 and served.std() > 20, "her warped reference frames and the avatar show a picture"
    assert (out / "contact-sheet.png").is_file()
    identity = report["avatar_identity"]
    assert identity is not None and len(identity["to_target"]) == report["side_by_side_frames"]
    again = headcast("demo", "--out", str(out), "--base-steps", "20")
    assert again.returncode == 0 and json.loads((out / "report.json").read_text())["target_cached"] is True


def test_nmfc_fits_the_main_person_and_writes_the_side_by_side(tmp_path: Path, sample_clip: Path,
                                                               sample_tracks_dir: Path) -> None:  # fmt: skip
    out = tmp_path / "nmfc"
    result = headcast("nmfc", str(sample_clip), "--tracks", str(sample_tracks_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "fit.json").read_text())
    assert report["person"] == 0 and report["frames_fitted"] >= 135
    assert report["residual_cm_mean"] < 0.1, "landmarks jitter by ~0.08 cm; the fit explains them to below that"
    assert (out / "person.npz").stat().st_size > 0 and (out / "person.png").read_bytes()[:4] == b"\x89PNG"
    with av.open(str(out / "nmfc.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 270 and frames[0].shape == (528, 3 * 720, 3)
    nmfc_woman, nmfc_man = frames[40][:, 720:1440], frames[130][:, 720:1440]
    assert (nmfc_woman.max(axis=2) > 40).mean() > 0.02, "her face is rendered"
    assert (nmfc_man.max(axis=2) > 40).mean() < 0.001, "the man's frames stay black"


def test_nmfc_refuses_a_person_who_is_not_there(tmp_path: Path, sample_clip: Path, sample_tracks_dir: Path) -> None:
    result = headcast("nmfc", str(sample_clip), "--tracks", str(sample_tracks_dir), "--person", "7",
                      "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    assert "no person 7" in result.stderr and "Traceback" not in result.stderr


def test_face_model_build_learns_a_prior_from_tracks(tmp_path: Path, sample_tracks_dir: Path) -> None:
    prior = tmp_path / "prior.npz"
    result = headcast("face-model", "build", str(sample_tracks_dir), "--out", str(prior))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("used ") == 2, "both people of the clip enter the prior"
    from face3d.person import PersonModel

    model = PersonModel.load(prior)
    jaw = model.basis[:, :, 25]  # jawOpen
    assert np.linalg.norm(jaw, axis=1).max() > 0.1, "B₀ opens the jaw by a visible amount at full weight"
    assert prior.with_suffix(".png").exists()


def test_token_mints_what_the_gateway_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    from signaling.auth import verify_token

    secret = "k" * 40
    monkeypatch.setenv("HEADCAST_SECRET", secret)
    result = headcast("token", "--room", "r1", "--role", "send", "--subject", "alice", "--target", "woman",
                      "--ttl", "120")  # fmt: skip
    assert result.returncode == 0, result.stderr
    grant = verify_token(secret.encode(), result.stdout.strip())
    assert (grant.room, grant.role, grant.targets, grant.subject) == ("r1", "send", ("woman",), "alice")
    refused = headcast("token", "--room", "r1", "--role", "admin", "--subject", "alice")
    assert refused.returncode == 1 and "unknown role 'admin'" in refused.stderr


def test_preprocess_lists_what_it_could_not_use(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "broken").mkdir(parents=True)
    (corpus / "broken" / "take1.mp4").write_bytes(b"\x00\x01 not a video" * 100)
    result = headcast("preprocess", str(corpus), "--out", str(tmp_path / "out"), "--size-px", "64")
    assert result.returncode == 1, "no usable identity is a failure the user must see"
    text = result.stdout.replace("\n", " ")
    assert "skipped" in text and "take1.mp4" in text
    assert "Traceback" not in result.stderr
    missing = headcast("preprocess", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2"))
    assert missing.returncode == 1 and "error:" in missing.stderr


def test_pretrain_runs_on_ray_train_and_continues_after_a_stop(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = headcast("pretrain", "--out", str(run), "--profile", "tiny-ci", "--steps", "4", "--identities", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run / "checkpoints" / "step-00000004.pt").is_file()
    more = headcast("pretrain", "--out", str(run), "--profile", "tiny-ci", "--steps", "6", "--identities", "2")
    assert more.returncode == 0, more.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6], "the second call continued from step 4 instead of starting over"
    refused = headcast("pretrain", "--out", str(tmp_path / "other"), "--profile", "nonsense")
    assert refused.returncode == 1 and "no profile 'nonsense'" in refused.stderr


@pytest.mark.parametrize(
    ("options", "words"),
    [(["--tls-cert", "missing-cert.pem", "--tls-key", "missing-key.pem"], "does not exist"),
     (["--tls-cert", "missing-cert.pem"], "both tls_cert and tls_key")],
)  # fmt: skip
def test_serve_refuses_unusable_tls_before_starting_ray(options: list[str], words: str) -> None:
    done = headcast("serve", "--port", "0", *options)
    assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr
    assert "gateway on" not in done.stderr  # nothing was started


def test_targets_revoke_then_delete_leaves_a_receipt(tmp_path: Path, avatar_bundle: Any) -> None:
    from inference.registry import TargetRegistry

    root = str(tmp_path / "registry")
    TargetRegistry(root).save(avatar_bundle)
    revoked = headcast(
        "targets", "revoke", "woman", "--by", "alice", "--reason", "consent withdrawn", "--registry", root
    )
    assert revoked.returncode == 0, revoked.stderr
    assert "target 'woman' was revoked by alice at" in revoked.stdout and "consent withdrawn" in revoked.stdout
    assert "revoked" in headcast("targets", "list", "--registry", root).stdout
    deleted = headcast("targets", "delete", "woman", "--registry", root)
    assert deleted.returncode == 0, deleted.stderr
    receipt = json.loads(
        Path(deleted.stdout.rsplit("receipt (every file with its sha256): ", 1)[1].strip()).read_text()
    )
    assert receipt["target_id"] == "woman" and receipt["owner"] == avatar_bundle.metadata.owner
    assert any(f["path"].endswith("generator.pt") and len(f["sha256"]) == 64 for f in receipt["files"])
    gone = headcast("targets", "revoke", "woman", "--by", "alice", "--registry", root)
    assert gone.returncode == 1 and "no target 'woman'" in gone.stderr
