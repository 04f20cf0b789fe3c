"""App uploads: a decompression bomb is refused from its header, fast and in bounded memory.

A few MB of FLAC silence can announce hours of 6-channel 96 kHz audio (15 GiB as float32).
validate_upload must read the header first and refuse it before decoding anything. Two bombs:
a real one (3 minutes of 96 kHz 6-channel silence, written block by block, 400 MB decoded) and
one whose STREAMINFO claims 2 hours (a real 2-hour file takes ~40 s to encode here; the header
is all the check may look at anyway).
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emosteer.app.core import AppConfig, validate_upload
from emosteer.errors import AudioError

BOMB_SR, BOMB_CHANNELS = 96_000, 6
CLAIMED_SECONDS = 2 * 3600
MAX_SECONDS_TAKEN = 1.0
MAX_GROWTH_BYTES = 100 * 1024 * 1024


def write_silence_flac(path: Path, seconds: int) -> Path:
    """`seconds` of 6-channel 96 kHz silence, one second per write: the test stays small."""
    block = np.zeros((BOMB_SR, BOMB_CHANNELS), np.int16)
    with sf.SoundFile(path, "w", BOMB_SR, BOMB_CHANNELS, subtype="PCM_16", format="FLAC") as f:
        for _ in range(seconds):
            f.write(block)
    return path


def claim_frames(path: Path, frames: int) -> Path:
    """Rewrite the FLAC STREAMINFO's 36-bit total-samples field (bytes 18..25 hold sample
    rate, channels, bits per sample and total samples, big-endian)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO is the first block"
    word = int.from_bytes(data[18:26], "big")
    mask = (1 << 36) - 1
    data[18:26] = ((word & ~mask) | frames).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    real = write_silence_flac(d / "three_minutes.flac", 180)
    liar = claim_frames(write_silence_flac(d / "two_hours.flac", 2), CLAIMED_SECONDS * BOMB_SR)
    assert sf.info(str(liar)).duration == CLAIMED_SECONDS
    return {"real": real, "liar": liar}


@pytest.mark.parametrize("kind", ["real", "liar"])
def test_bomb_is_refused_from_the_header(bombs, kind):
    path = bombs[kind]
    assert path.stat().st_size < AppConfig().max_upload_mb * 1024 * 1024  # passes the size cap
    rss_before = _rss_peak_bytes()
    tracemalloc.start()
    try:
        start = time.monotonic()
        with pytest.raises(AudioError, match=r"s is over the 60 s limit") as info:
            validate_upload(path, AppConfig())
        taken = time.monotonic() - start
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.name in str(info.value) and str(path.parent) not in str(info.value)
    assert taken < MAX_SECONDS_TAKEN, f"took {taken:.2f} s"
    assert traced_peak < MAX_GROWTH_BYTES, f"allocated {traced_peak / 2**20:.0f} MiB"
    assert _rss_peak_bytes() - rss_before < MAX_GROWTH_BYTES


def test_decoded_size_is_capped_too(tmp_path):
    # Within the duration limit but too wide: 8 channels at 384 kHz for 3 s is 35 MiB decoded.
    block = np.zeros((384_000, 8), np.int16)
    path = tmp_path / "wide.flac"
    with sf.SoundFile(path, "w", 384_000, 8, subtype="PCM_16", format="FLAC") as f:
        for _ in range(3):
            f.write(block)
    with pytest.raises(AudioError, match=r"wide.flac: decodes to 35 MB .*over the 10 MB limit"):
        validate_upload(path, AppConfig(max_decoded_mb=10))


def test_an_allowed_upload_still_loads(tmp_path):
    t = np.arange(32_000) / 48_000
    stereo = 0.3 * np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1)
    path = tmp_path / "ok.flac"
    sf.write(path, stereo.astype(np.float32), 48_000, subtype="PCM_16")
    wav = validate_upload(path, AppConfig(max_seconds=1.0))
    assert wav.shape == (int(round(32_000 / 3)),) and wav.dtype == np.float32
