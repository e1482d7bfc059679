"""A small archive for the archive-analysis tests: 20 short files of mixed rates (8 to 48 kHz),
channels (1 and 2) and formats (WAV, FLAC, OGG), cut from the bundled speech clip, plus one
FLAC whose header reads but whose frames are garbage half-way (it fails mid-decode); and the
comparison of two analyses' window rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from tests.conftest import DATA_DIR, ROOT_DIR

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY_MODEL = str(DATA_DIR / "tiny-parametrized")
RATES_HZ = (8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000)
FORMATS = ("wav", "flac", "ogg")
FILES = 20
TOLERANCE = 1e-5


def make_archive(root: Path) -> tuple[list[Path], Path]:
    """The 20 files (in nested folders) and the corrupt one, under ``root``."""
    x, rate = sf.read(SPEECH, dtype="float32")
    rng = np.random.default_rng(7)
    files = []
    for k in range(FILES):
        out_rate = RATES_HZ[k % len(RATES_HZ)]
        channels = 1 + k % 2
        seconds = 1.2 + (k % 5) * 0.7
        start = int(rng.integers(0, len(x) - int(seconds * rate)))
        clip = x[start : start + int(seconds * rate)]
        y = soxr.resample(clip, rate, out_rate).astype(np.float32)
        if channels == 2:  # the second channel: quieter, delayed, so the mix differs from both
            y = np.stack([y, 0.5 * np.roll(y, out_rate // 10)], axis=1)
        path = root / f"set{k % 3}" / f"clip{k:02d}.{FORMATS[k % len(FORMATS)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, out_rate)
        files.append(path)
    return files, corrupt_flac(root / "set0" / "corrupt.flac")


def corrupt_flac(path: Path) -> Path:
    """A FLAC file whose header and first frames read, and whose middle is garbage."""
    x, rate = sf.read(SPEECH, dtype="float32")
    sf.write(path, np.stack([x[: 4 * rate]] * 2, axis=1), rate)
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    garbage = np.random.default_rng(1).integers(0, 256, 20_000).astype(np.uint8)
    data[third : third + 20_000] = garbage.tobytes()
    path.write_bytes(bytes(data))
    return path


def windows_by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Window rows by (file, stream, window)."""
    return {
        (r["file"], r.get("stream", "main"), int(r["window"])): r
        for r in rows
        if r.get("type", "window") == "window"
    }


def probs_of(row: dict[str, Any]) -> list[float]:
    if "probs" in row:
        return list(row["probs"])
    return [row[f"p{i}"] for i in range(6)]


def assert_same_windows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same windows (times, speech), probabilities, arousal and valence within 1e-5."""
    g, w = windows_by_key(got), windows_by_key(want)
    assert g.keys() == w.keys()
    assert g, "no windows to compare"
    for key, a in g.items():
        b = w[key]
        assert (a["t_start_s"], a["t_end_s"]) == (b["t_start_s"], b["t_end_s"]), key
        assert bool(a["is_speech"]) == bool(b["is_speech"]), key
        if b["speech"] is None:
            assert a["speech"] is None, key
        else:
            assert abs(a["speech"] - b["speech"]) <= TOLERANCE, key
        np.testing.assert_allclose(probs_of(a), probs_of(b), atol=TOLERANCE, err_msg=str(key))
        for name in ("arousal", "valence"):
            assert abs(a[name] - b[name]) <= TOLERANCE, (key, name)
