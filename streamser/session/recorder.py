"""Records the captured audio, at its native rate and channel count, into crash-safe segments.

Format: 32-bit float WAV (``WAVE_FORMAT_IEEE_FLOAT``). The capture stream is float32 already,
so the recording is bit-exact: replaying it reproduces what the analyser heard, and samples
beyond full scale are kept rather than clipped. The price is twice the size of PCM_16
(48 kHz mono: 192 kB/s, about 690 MB per hour).

Crash safety: libsndfile (soundfile) fills in a WAV header's sizes only when the file is
closed; ``SoundFile.flush`` merely syncs, so after ``kill -9`` the header claims an empty file
(RIFF size 8, data size 0) and strict readers reject it. So the segments are written here
directly: after every block the data is appended first, then the header's sizes are rewritten
to cover it. At any instant the header describes only complete blocks already in the file; a
kill between the two writes leaves one block past the declared data, which readers ignore.
Each segment is closed (and fsynced) when it reaches ``segment_s``, so a crash loses at most
the samples not yet handed to :meth:`AudioRecorder.write`.

File names carry the segment's start on the native-rate stream clock
(``audio/seg00003_f000000720000.wav``), so a recording can be reassembled from the directory
alone, even when meta.json's copy of the segment list missed the last update.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamser.session.errors import SessionError
from streamser.session.files import AUDIO_DIR_NAME, DIR_MODE, FILE_MODE

WAVE_FORMAT_IEEE_FLOAT = 3
BYTES_PER_SAMPLE = 4
HEADER_BYTES = 56
"""RIFF/WAVE (12) + fmt chunk (8 + 16) + fact chunk (8 + 4) + data chunk header (8)."""
MAX_DATA_BYTES = 0xFFFFFFFF - HEADER_BYTES
"""A RIFF size field is 32 bits, which caps one segment's data."""
SEGMENT_NAME_RE = re.compile(r"^seg(\d+)_f(\d+)\.wav$")


def segment_file_name(index: int, start_frame: int) -> str:
    """Name of segment ``index`` whose first frame is native-rate stream frame ``start_frame``."""
    return f"seg{index:05d}_f{start_frame:012d}.wav"


def wav_float_header(sample_rate_hz: int, channels: int, frames: int) -> bytes:
    """A 56-byte float32 WAV header describing ``frames`` frames of interleaved data."""
    block_align = BYTES_PER_SAMPLE * channels
    data_bytes = frames * block_align
    fmt = struct.pack(
        "<HHIIHH",
        WAVE_FORMAT_IEEE_FLOAT,
        channels,
        sample_rate_hz,
        sample_rate_hz * block_align,
        block_align,
        8 * BYTES_PER_SAMPLE,
    )
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", HEADER_BYTES - 8 + data_bytes),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"fact",
            struct.pack("<II", 4, frames),
            b"data",
            struct.pack("<I", data_bytes),
        ]
    )


class _SegmentWriter:
    """One open segment file, written with plain syscalls so each block reaches the kernel at
    once (it then survives the death of the process) and the header is kept current."""

    def __init__(self, path: Path, sample_rate_hz: int, channels: int) -> None:
        self.path = path
        self.frames = 0
        self._rate = sample_rate_hz
        self._channels = channels
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, FILE_MODE)
        try:
            _write_all(self._fd, wav_float_header(sample_rate_hz, channels, 0))
        except OSError:
            os.close(self._fd)
            raise

    def append(self, frames: np.ndarray) -> None:
        """Append ``frames`` then declare them in the header (data before header, always)."""
        _write_all(self._fd, frames.astype("<f4", copy=False).tobytes())
        self.frames += len(frames)
        end = os.lseek(self._fd, 0, os.SEEK_CUR)
        os.lseek(self._fd, 0, os.SEEK_SET)
        _write_all(self._fd, wav_float_header(self._rate, self._channels, self.frames))
        os.lseek(self._fd, end, os.SEEK_SET)

    def close(self, *, sync: bool = True) -> None:
        try:
            if sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class AudioRecorder:
    """Taps the capture stream (before resampling) and writes it to ``<session>/audio/``.

    Recording may start and stop several times during a run; each run and each gap in the
    stream (dropped audio) begins a new segment, so every segment is contiguous on the stream
    clock and :func:`read_recording` can put every frame back at its stream index.
    ``on_segments`` receives the segment list whenever a segment starts and when recording
    stops (wire it to ``SessionLogger.update_meta(audio_segments=...)`` to persist it).
    An ``OSError`` never reaches the caller: recording stops, :attr:`failed` is set and
    ``on_failure`` is called once. All methods are thread-safe.
    """

    def __init__(
        self,
        session_dir: Path,
        sample_rate_hz: int,
        channels: int,
        segment_s: float = 5.0,
        on_failure: Callable[[str], None] | None = None,
        on_segments: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if sample_rate_hz <= 0 or channels <= 0 or segment_s <= 0:
            raise ValueError("sample_rate_hz, channels and segment_s must be positive")
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = int(channels)
        self.segment_frames = max(1, round(segment_s * sample_rate_hz))
        if self.segment_frames * BYTES_PER_SAMPLE * channels > MAX_DATA_BYTES:
            raise ValueError(f"segment_s={segment_s} exceeds the 4 GiB limit of one WAV file")
        self.audio_dir = Path(session_dir) / AUDIO_DIR_NAME
        self.failed: str | None = None
        """Why recording stopped on its own (e.g. "No space left on device"), or None."""
        self._on_failure = on_failure
        self._on_segments = on_segments
        self._lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._snapshot_seq = 0
        self._delivered_seq = 0
        self._recording = False
        self._segments: list[dict[str, Any]] = []
        self._writer: _SegmentWriter | None = None
        self._next_frame = 0
        self._next_index = (
            sum(1 for _ in self.audio_dir.glob("seg*.wav")) if self.audio_dir.is_dir() else 0
        )

    @property
    def recording(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (or a failure)."""
        return self._recording

    @property
    def segments(self) -> list[dict[str, Any]]:
        """``{"file", "start_frame", "start_s", "frames"}`` per segment; ``file`` is relative
        to the session directory, frames are native-rate stream frames."""
        with self._lock:
            return [dict(s) for s in self._segments]

    def start(self, stream_frame: int) -> None:
        """Record from native-rate stream frame ``stream_frame`` on; no-op while recording."""
        with self._lock:
            if self._recording or self.failed is not None:
                return
            self._recording = True
            self._next_frame = int(stream_frame)

    def write(self, stream_frame: int, block: np.ndarray) -> None:
        """Record ``block`` ((n, channels) float32, first frame at ``stream_frame``); frames
        before the run's start or already written are ignored, as is everything while stopped."""
        if not self._recording:
            return
        frames = _as_frames(block, self.channels)
        reason: str | None = None
        started = False
        with self._lock:
            if not self._recording:
                return
            try:
                started = self._write_locked(int(stream_frame), frames)
            except OSError as e:
                reason = self._fail_locked(e)
            snapshot = self._snapshot_locked()
        self._notify(started, snapshot, reason)

    def stop(self) -> None:
        """Close the open segment; idempotent, and a no-op after a failure."""
        reason: str | None = None
        with self._lock:
            if not self._recording:
                return
            self._recording = False
            try:
                self._close_writer()
            except OSError as e:
                reason = self._fail_locked(e)
            snapshot = self._snapshot_locked()
        self._notify(bool(snapshot[1]), snapshot, reason)

    def _write_locked(self, stream_frame: int, frames: np.ndarray) -> bool:
        first = max(stream_frame, self._next_frame)
        if first >= stream_frame + len(frames):
            return False
        frames = frames[first - stream_frame :]
        writer = self._writer
        if writer is not None and self._segments[-1]["start_frame"] + writer.frames != first:
            self._close_writer()  # a gap in the stream: the next frames start a new segment
        started = False
        frame = first
        while len(frames):
            if self._writer is None:
                self._open_writer(frame)
                started = True
            writer = self._writer
            assert writer is not None
            take = min(len(frames), self.segment_frames - writer.frames)
            writer.append(frames[:take])
            self._segments[-1]["frames"] = writer.frames
            frame += take
            frames = frames[take:]
            if writer.frames >= self.segment_frames:
                self._close_writer()
        self._next_frame = frame
        return started

    def _open_writer(self, start_frame: int) -> None:
        self.audio_dir.mkdir(mode=DIR_MODE, exist_ok=True)
        name = segment_file_name(self._next_index, start_frame)
        self._writer = _SegmentWriter(self.audio_dir / name, self.sample_rate_hz, self.channels)
        self._next_index += 1
        self._segments.append(
            {
                "file": f"{AUDIO_DIR_NAME}/{name}",
                "start_frame": start_frame,
                "start_s": start_frame / self.sample_rate_hz,
                "frames": 0,
            }
        )

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _fail_locked(self, error: OSError) -> str:
        self._recording = False
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError):  # the failure being reported explains it
                writer.close(sync=False)
        self.failed = error.strerror or str(error)
        return self.failed

    def _snapshot_locked(self) -> tuple[int, list[dict[str, Any]]]:
        self._snapshot_seq += 1
        return self._snapshot_seq, [dict(s) for s in self._segments]

    def _notify(
        self, changed: bool, snapshot: tuple[int, list[dict[str, Any]]], reason: str | None
    ) -> None:
        """Callbacks run outside the main lock, so they may take their time or call back in;
        a snapshot older than one already delivered (another thread overtook) is dropped, so
        the last list received is always the newest."""
        seq, segments = snapshot
        if changed and self._on_segments is not None:
            with self._notify_lock:
                if seq > self._delivered_seq:
                    self._delivered_seq = seq
                    self._on_segments(segments)
        if reason is not None and self._on_failure is not None:
            self._on_failure(reason)


def _as_frames(block: np.ndarray, channels: int) -> np.ndarray:
    frames = np.asarray(block, dtype=np.float32)
    if frames.ndim == 1 and channels == 1:
        frames = frames[:, None]
    if frames.ndim != 2 or frames.shape[1] != channels:
        raise ValueError(f"expected a block of shape (n, {channels}), got {frames.shape}")
    return frames


@dataclass(frozen=True)
class RecordedSegment:
    """One segment file as found on disk; ``frames`` is what its header declares."""

    path: Path
    index: int
    start_frame: int
    frames: int
    sample_rate_hz: int
    channels: int

    @property
    def end_frame(self) -> int:
        """Stream frame just past the segment's last frame."""
        return self.start_frame + self.frames

    def read(self) -> np.ndarray:
        """The segment's samples as (frames, channels) float32."""
        try:
            data, _ = sf.read(self.path, frames=self.frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise SessionError(f"cannot read audio segment {self.path}: {e}") from e
        return data


def list_recording_segments(session_dir: Path) -> list[RecordedSegment]:
    """The session's segments in stream order, from the files themselves (headers only).

    Files without audio (a crash right after creating one, before its first block) are left
    out.
    """
    audio_dir = Path(session_dir) / AUDIO_DIR_NAME
    if not audio_dir.is_dir():
        return []
    found: list[RecordedSegment] = []
    for path in audio_dir.iterdir():
        match = SEGMENT_NAME_RE.match(path.name)
        if match is None or path.stat().st_size < HEADER_BYTES:
            continue
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise SessionError(f"cannot read audio segment {path}: {e}") from e
        if info.frames == 0:
            continue
        found.append(
            RecordedSegment(
                path=path,
                index=int(match.group(1)),
                start_frame=int(match.group(2)),
                frames=int(info.frames),
                sample_rate_hz=int(info.samplerate),
                channels=int(info.channels),
            )
        )
    found.sort(key=lambda s: (s.start_frame, s.index))
    return found


def iter_recording(session_dir: Path) -> Iterator[tuple[RecordedSegment, np.ndarray]]:
    """Yield each segment with its samples, one file in memory at a time (long recordings)."""
    for segment in list_recording_segments(session_dir):
        yield segment, segment.read()


def read_recording(session_dir: Path) -> tuple[np.ndarray, int]:
    """The whole recording as ((frames, channels) float32, native rate in Hz).

    Index ``i`` of the result is native-rate stream frame ``i``: the time before the first
    segment and gaps between segments (recording paused, audio dropped) are zeros. For long
    recordings, prefer :func:`iter_recording`.
    """
    segments = list_recording_segments(session_dir)
    if not segments:
        raise SessionError(f"no audio was recorded in session {Path(session_dir).name}")
    rates = {s.sample_rate_hz for s in segments}
    channel_counts = {s.channels for s in segments}
    if len(rates) != 1 or len(channel_counts) != 1:
        raise SessionError(
            f"audio segments of {Path(session_dir).name} disagree on sample rate or channels"
        )
    out = np.zeros((max(s.end_frame for s in segments), channel_counts.pop()), np.float32)
    for segment in segments:
        data = segment.read()
        out[segment.start_frame : segment.start_frame + len(data)] = data
    return out, rates.pop()
