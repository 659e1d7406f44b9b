"""Write the seed inputs of every fuzz target into ops/fuzz/corpus/<target>/, from the real encoders and writers.

`python ops/fuzz/seeds.py` rewrites the `seed-<n>` files (inputs the fuzzer found stay). A fuzzer mutates
seeds: starting from well-formed packets, tokens, manifests and tracks it reaches the checks behind the
first byte far sooner than from nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"


def seeds() -> dict[str, list[bytes]]:
    """Return the seed inputs of each target."""
    sys.path.insert(0, str(ROOT))
    from edge.capture import SourceInfo
    from edge.tracking import TrackedFrame
    from edge.tracks import SUMMARY_FILE, TRACKS_FILE, Tracks, save_tracks
    from face3d.coefficients import Coefficients
    from ops.fuzz.targets import SECRET, join
    from signaling.auth import mint_token
    from training.jobs.progress import PROGRESS_LOG_PREFIX, JobProgress
    from wire import encode_plain, encode_stream

    rng = np.random.default_rng(0)
    faces = [Coefficients(seq, 40 * seq, rng.uniform(0, 1, 52).astype(np.float32),
                          rng.uniform(-0.3, 0.3, 3).astype(np.float32), rng.uniform(-0.1, 0.1, 2).astype(np.float32),
                          0.012) for seq in range(12)]  # fmt: skip
    stream = encode_stream(faces, key_interval=5)
    wire = [b"".join(join(p, b"") for p in stream), join(encode_plain(faces[0]), b""), join(stream[1], b"")]

    token = mint_token(SECRET, "alice", "room", "send", ("target",), max_sessions=2)
    claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
    tokens = [join(token.encode(), json.dumps(claims).encode(), 2), join(b"Bearer " + token.encode(), b"{}", 2)]

    headers = [join(b"65536", join(b"Bearer " + token.encode(), b"\x1a\x45\xdf\xa3\x01\x00", 2)),
               join(b"0", join(b"Bearer", b"\x00\x00\x00\x20ftypisom", 2))]  # fmt: skip

    consent = {"subject": "alice", "recorded_at": "2026-12-03T00:00:00+00:00", "recording_sha256": "0" * 64}
    metadata = {"target_id": "woman", "owner": "alice", "consent": consent, "model_size": "tiny",
                "allowed_drivers": ["bob"], "training": {"steps": 10}, "metrics": {}}  # fmt: skip
    manifest = json.dumps({"format_version": 2, "version": "20261203T000000", "created": "2026-12-03T00:00:00",
                           "metadata": metadata}, indent=2).encode()  # fmt: skip
    revoked = json.dumps({"target_id": "woman", "revoked_at": "2026-12-03T00:00:00", "by": "alice", "reason": "x"})
    manifests = [join(manifest, b"", 2), join(manifest, revoked.encode(), 2)]

    frames = [TrackedFrame(i, 40 * i, (64, 48), rng.uniform(0, 1, (478, 3)).astype(np.float32),
                           rng.uniform(0, 1, 52).astype(np.float32), np.eye(4, dtype=np.float32))
              for i in range(2)]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        save_tracks(Tracks(SourceInfo("seed.mp4", 64, 48, 25.0, 2), frames, [], []), folder)
        summary, arrays = (Path(folder) / SUMMARY_FILE).read_bytes(), (Path(folder) / TRACKS_FILE).read_bytes()
    tracks = [join(summary, join(arrays, b"", 4), 2)]

    record = JobProgress(step=3, total=10, stage="fine-tuning", message="", eta_s=12.5).to_json().encode()
    progress = [join(record, (PROGRESS_LOG_PREFIX + record.decode() + "\nother line\n").encode())]
    return {"wire": wire, "token": tokens, "upload-headers": headers, "manifest": manifests, "tracks": tracks,
            "job-progress": progress}  # fmt: skip


def main() -> None:
    for name, inputs in seeds().items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for n, data in enumerate(inputs):
            (folder / f"seed-{n}").write_bytes(data)
        print(f"{name}: {len(inputs)} seeds in {folder.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
