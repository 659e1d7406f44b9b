"""The provenance mark: a faint watermark naming the target and the session in every composited frame.

The mark is a spread-spectrum pattern added to the frame's brightness. At the reference size (256 px)
it is a 64 px tile repeated over the frame. The tile holds 128 frequencies, with periods from 6.4 px
down to about 4.7 px. Their cosine and sine parts make 256 values. Those values are the sum of 65
orthogonal ±1 codes, rows of a Hadamard matrix with scrambled columns. The first code is a pilot,
present in every mark. The other 64 carry the payload's bits: 16 bits naming the target and 16 naming
the session. 4 Reed–Solomon parity bytes protect them and correct any 2 bad bytes. The 191 rows never
sent measure the noise.

To read a frame, rescale it to the reference size at a few crop factors (a screen recording keeps a
few percent less). Take away the face's shading (a blur subtracted) and clip the edges. Then fold the
frame onto one tile, so every copy of the tile adds up. Cross-correlating the pilot with the folded
tile through an FFT gives the crop's offset. At that offset the tile's band is projected onto every
row. The pilot's projection, in units of the unsent rows' spread, says whether a mark is there: about
4 on unmarked video, 30 to 60 on a marked frame straight from the gateway. The bits' signs are the
codeword. Folded tiles of several frames add up, so a second of video reads more reliably than one
frame. `read_windows` reads a video that way, one window at a time.

Measured by `ops/bench/watermark.py`, which also gives the false-positive rate and the PSNR cost.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import numpy.typing as npt
import reedsolo
import scipy.linalg

REFERENCE_PX = 256  # the frame size the tile is laid out for; other sizes get the pattern rescaled
TILE_PX = 64
CHIPS = 256  # real values the codes span: the cosine and sine parts of 128 frequencies of the tile
LOWEST_CYCLES = 10  # cycles per tile of the lowest frequency used (a period of 6.4 px at the reference size)
SHADING_SIGMA_PX = 2.0  # the blur whose subtraction removes the face's shading before edges are clipped
CLIP_MADS = 2.0  # shading-free values beyond this many median absolute values are clipped to it
PAYLOAD_BYTES = 4  # target tag (2 bytes) and session tag (2 bytes)
PARITY_BYTES = 4
CODE_BITS = (PAYLOAD_BYTES + PARITY_BYTES) * 8
AMPLITUDE = 2.0  # RMS of the pattern in grey levels: PSNR 20·log10(255 / 2) ≈ 42 dB
PILOT_WEIGHT = 4.0  # the pilot's weight against each bit's 1: a fifth of the pattern's power
KEY = 0x68656164  # seeds the codes' scrambling: a reader needs the same key
CROPS = tuple(round(1.0 - 0.01 * i, 2) for i in range(13))  # the share of the frame a crop keeps: 1.00 to 0.88
MIN_PILOT_Z = 7.0  # the pilot's projection, in units of the noise's, from which a mark is taken to be there
HEX_SESSION = re.compile(r"[0-9a-f]{4,}")


@dataclasses.dataclass(frozen=True)
class Mark:
    """What a mark says: the tags of the target and of the session, 16 bits each (see `target_tag`)."""

    target_tag: int
    session_tag: int

    @classmethod
    def of(cls, target_id: str, session_id: str) -> Mark:
        """Return the mark of a session driving `target_id`."""
        return cls(target_tag(target_id), session_tag(session_id))

    def payload(self) -> bytes:
        """Return the 4 payload bytes."""
        return self.target_tag.to_bytes(2, "big") + self.session_tag.to_bytes(2, "big")


@dataclasses.dataclass(frozen=True, eq=False)
class Reading:
    """What was read from a frame or a window of frames.

    mark: the decoded mark, or None when no mark was found.
    pilot_z: the pilot's projection in units of the noise's (about 4 on unmarked video; MIN_PILOT_Z reads).
    confidence: the share of the soft bits' weight that agrees with the decoded codeword (1.0: all of it).
    crop: the crop factor the frames were read at.
    frames: how many frames were folded into this reading.
    soft: (CODE_BITS,) the codeword's soft bits, before error correction (their signs are the bits).
    """

    mark: Mark | None
    pilot_z: float
    confidence: float
    crop: float
    frames: int
    soft: npt.NDArray[np.float32]


def target_tag(target_id: str) -> int:
    """Return the 16-bit tag of a target id: the first two bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(target_id.encode()).digest()[:2], "big")


def session_tag(session_id: str) -> int:
    """Return the 16-bit tag of a session id: its first 4 hex digits (the gateway's ids are hex, so the
    tag is the start of the id its log shows), or the first two bytes of its SHA-256 for other ids."""
    if HEX_SESSION.fullmatch(session_id):
        return int(session_id[:4], 16)
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:2], "big")


def codeword_bits(mark: Mark) -> npt.NDArray[np.float32]:
    """Return the codeword of `mark` (payload and parity) as CODE_BITS values ±1."""
    codeword = bytes(_rs().encode(mark.payload()))
    return np.unpackbits(np.frombuffer(codeword, np.uint8)).astype(np.float32) * 2 - 1


@functools.cache
def _rows() -> npt.NDArray[np.float32]:
    """Return (CHIPS, CHIPS) ±1: a Hadamard matrix, its columns scrambled (orthogonal rows that look like noise).

    Row 0 is the pilot, rows 1 to CODE_BITS carry the bits, and the rest are never sent: what a frame
    projects onto them is its noise, the yardstick for the others."""
    rng = np.random.default_rng(KEY)
    rows = scipy.linalg.hadamard(CHIPS)[:, rng.permutation(CHIPS)] * rng.choice([-1, 1], CHIPS)
    return rows.astype(np.float32)


@functools.cache
def _rs() -> reedsolo.RSCodec:
    return reedsolo.RSCodec(PARITY_BYTES)


@functools.cache
def _band() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Return the rows and columns, in the tile's 2-D DFT, of the CHIPS // 2 frequencies the mark uses:
    the lowest ones from LOWEST_CYCLES cycles per tile up, one of each conjugate pair."""
    freqs = np.fft.fftfreq(TILE_PX, 1 / TILE_PX)
    v, u = np.meshgrid(freqs, freqs, indexing="ij")
    radius = np.hypot(u, v)
    half = (v > 0) | ((v == 0) & (u > 0))
    rows, cols = np.nonzero(half & (radius >= LOWEST_CYCLES))
    order = np.argsort(radius[rows, cols], kind="stable")[: CHIPS // 2]
    return rows[order], cols[order]


def _chips_to_tile(chips: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return the (TILE_PX, TILE_PX) tile whose band frequencies hold `chips` (cosine, sine parts) and
    nothing else."""
    rows, cols = _band()
    spectrum = np.zeros((TILE_PX, TILE_PX), np.complex128)
    values = chips[0::2] + 1j * chips[1::2]
    spectrum[rows, cols] = values
    spectrum[(-rows) % TILE_PX, (-cols) % TILE_PX] = np.conj(values)
    return (np.real(np.fft.ifft2(spectrum)) * TILE_PX).astype(np.float32)


def _tile_to_chips(tile: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return the (CHIPS,) band values of a folded tile, the shading filter's attenuation undone (it is
    the same at every position, so it only scales each frequency: the codes stay apart)."""
    rows, cols = _band()
    values = np.fft.fft2(tile)[rows, cols] / (TILE_PX * _passed())
    return np.stack([values.real, values.imag], axis=1).reshape(-1).astype(np.float32)


@functools.cache
def _passed() -> npt.NDArray[np.float64]:
    """Return how much of each band frequency the shading filter (a blur subtracted) lets through."""
    rows, cols = _band()
    freqs = np.fft.fftfreq(TILE_PX)
    radius = np.hypot(freqs[rows], freqs[cols])
    return 1 - np.exp(-2 * np.pi**2 * SHADING_SIGMA_PX**2 * radius**2)


@functools.lru_cache(maxsize=64)
def pattern(mark: Mark, size_px: int = REFERENCE_PX) -> npt.NDArray[np.int16]:
    """Return the (size_px, size_px) pattern, in grey levels, that `embed` adds to a frame's channels."""
    weights = np.concatenate([[PILOT_WEIGHT], codeword_bits(mark)]).astype(np.float32)
    tile = _chips_to_tile(weights @ _rows()[: 1 + CODE_BITS])
    repeats = -(-REFERENCE_PX // TILE_PX)
    full = np.tile(tile, (repeats, repeats))[:REFERENCE_PX, :REFERENCE_PX]
    full *= AMPLITUDE / float(np.sqrt(np.mean(full**2)))
    if size_px != REFERENCE_PX:
        full = np.asarray(cv2.resize(full, (size_px, size_px), interpolation=cv2.INTER_LINEAR), np.float32)
    return np.round(full).astype(np.int16)


def embed(frame: npt.NDArray[np.uint8], mark: Mark) -> None:
    """Add `mark` to a square (S, S, 3) uint8 RGB frame, in place (the same amount to each channel: brightness)."""
    size = frame.shape[0]
    if frame.shape[1] != size:
        raise ValueError(f"the mark is laid out on square frames, not {frame.shape[1]}×{size}")
    marked = frame.astype(np.int16)
    marked += pattern(mark, size)[..., None]
    np.clip(marked, 0, 255, out=marked)
    frame[...] = marked


def _luma(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    if frame.ndim == 2:
        return frame.astype(np.float32)
    rgb = frame.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def fold(frame: npt.NDArray[np.uint8], crop: float) -> npt.NDArray[np.float32]:
    """Return the (TILE_PX, TILE_PX) sum of `frame`'s tiles at the reference scale, its shading removed.

    `frame` is (H, W, 3) RGB or (H, W) grey, of any size; `crop` is the share of the composited
    frame's width that it shows (1.0 uncropped). Tiles cut by the frame's edge count in part.
    """
    luma = _luma(frame)
    scale = REFERENCE_PX * crop / luma.shape[1]
    if scale != 1.0:
        width, height = max(TILE_PX, round(luma.shape[1] * scale)), max(TILE_PX, round(luma.shape[0] * scale))
        resized = cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        luma = np.asarray(resized, np.float32)
    detail = luma - cv2.GaussianBlur(luma, (0, 0), SHADING_SIGMA_PX)
    # Edges and hair dwarf a mark of 2 grey levels: clipped, they count no more than the mark does.
    limit = CLIP_MADS * float(np.median(np.abs(detail))) + 1e-3
    np.clip(detail, -limit, limit, out=detail)
    height, width = detail.shape
    rows, cols = -(-height // TILE_PX), -(-width // TILE_PX)
    padded = np.zeros((rows * TILE_PX, cols * TILE_PX), np.float32)
    padded[:height, :width] = detail
    return padded.reshape(rows, TILE_PX, cols, TILE_PX).sum(axis=(0, 2))


@functools.cache
def _pilot_spectrum() -> npt.NDArray[np.complex128]:
    return np.conj(np.fft.fft2(_chips_to_tile(_rows()[0])))


def read_tile(folded: npt.NDArray[np.float32], crop: float = 1.0, frames: int = 1) -> Reading:
    """Return what a folded tile (one frame's, or the sum of several at the same crop) says."""
    surface = np.real(np.fft.ifft2(np.fft.fft2(folded) * _pilot_spectrum()))
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    aligned = np.roll(folded, (-int(peak[0]), -int(peak[1])), axis=(0, 1))
    projections = _rows() @ _tile_to_chips(aligned)
    noise = float(np.sqrt(np.mean(projections[1 + CODE_BITS :] ** 2)))
    pilot_z = float(projections[0] / noise) if noise > 0 else 0.0
    soft = projections[1 : 1 + CODE_BITS]
    mark: Mark | None = None
    confidence = 0.0
    if pilot_z >= MIN_PILOT_Z:
        try:
            payload = bytes(_rs().decode(np.packbits(soft > 0).tobytes())[0])
        except reedsolo.ReedSolomonError:  # more than 2 bad bytes: a mark too damaged to name anyone
            payload = b""
        if payload:
            mark = Mark(int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:], "big"))
            weight = float(np.abs(soft).sum())
            agreeing = float(np.abs(soft)[np.sign(soft) == codeword_bits(mark)].sum())
            confidence = agreeing / weight if weight > 0 else 0.0
    return Reading(mark, pilot_z, confidence, crop, frames, soft)


def read(frames: Iterable[npt.NDArray[np.uint8]], crops: Iterable[float] = CROPS) -> Reading:
    """Return what a run of frames (one shot: the same size and crop) says, at the crop that reads best."""
    crops = tuple(crops)
    folded: dict[float, npt.NDArray[np.float32]] = {}
    count = 0
    for frame in frames:
        for crop in crops:
            tile = fold(frame, crop)
            folded[crop] = folded[crop] + tile if crop in folded else tile
        count += 1
    if not count:
        raise ValueError("no frames to read")
    readings = [read_tile(tile, crop, count) for crop, tile in folded.items()]
    return max(readings, key=lambda r: (r.mark is not None, r.pilot_z))


def read_windows(frames: Iterable[npt.NDArray[np.uint8]], window: int) -> Iterator[Reading]:
    """Yield one reading per `window` consecutive frames (the last window may be shorter)."""
    batch: list[npt.NDArray[np.uint8]] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == window:
            yield read(batch)
            batch = []
    if batch:
        yield read(batch)
