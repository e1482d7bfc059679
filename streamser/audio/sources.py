"""Where audio comes from: a microphone, a file replayed, or an array in memory.

Every source writes ``(n, channels)`` float32 blocks at its native sample rate into a
:class:`~streamser.audio.ring.RingBuffer` the caller made with ``source.channels`` channels and the
policy ``source.ring_policy()``; resampling and mixing happen downstream, on the consumer's thread.
A source closes the ring when its stream ends (end of file, failure or :meth:`stop`), so readers
drain what is left and then see ``ring.closed``. For a lossless ``"block"`` ring, attach the
reader before calling :meth:`start`: with no reader attached the ring has nobody to wait for.

Errors a user can fix (a missing file, an unknown device, an unsupported or implausible rate)
are raised as :class:`SourceError` from the constructor, so the command line fails before
anything starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
import soundfile

from streamser.audio.devices import (
    InputDevice,
    SourceError,
    import_sounddevice,
    list_input_devices,
    one_line,
    resolve_input_device,
)
from streamser.audio.rates import check_input_rate, plausible_rate

if TYPE_CHECKING:
    from streamser.audio.ring import RingBuffer

__all__ = [
    "ArraySource",
    "AudioSource",
    "FileSource",
    "MicSource",
    "SourceError",
    "mix_to_mono",
]

JOIN_TIMEOUT_S = 2.0
"""How long :meth:`stop` waits for a source's thread before giving up on it (it is a daemon)."""

MAX_DEFAULT_CHANNELS = 2
"""Channels opened when the user asks for none. Virtual ALSA devices (``default``, ``pulse``)
advertise 32 input channels; no microphone has more than two that matter for speech."""

STANDARD_RATES_HZ = (8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000)
"""Rates offered as valid choices when a device refuses the one asked for."""
PA_INVALID_CHANNELS = -9998
"""PortAudio's ``paInvalidChannelCount``."""

_Replay = TypeVar("_Replay", bound="_ReplaySource")


class AudioSource(Protocol):
    """What the pipeline needs from anything that produces audio."""

    sample_rate_hz: int
    """Native rate of the delivered stream; the consumer resamples."""
    channels: int
    """Channels per frame in the ring; the consumer mixes them (see :func:`mix_to_mono`)."""
    description: str
    """Device name or file path, for the status line and the session's meta.json."""
    realtime: bool
    """True for a microphone or real-time replay: the ring overwrites, the newest window wins.
    False for lossless replay as fast as the consumer goes."""
    finished: threading.Event
    """Set when a finite source has delivered everything, or when any source failed."""
    error: BaseException | None
    """Why the source failed (device lost, unreadable file), or None."""

    def start(self, ring: RingBuffer) -> None: ...

    def stop(self) -> None: ...

    def ring_policy(self) -> Literal["overwrite", "block"]: ...


def mix_to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of an ``(n, channels)`` block into ``(n,)`` float32.

    Done by the consumer, never in the audio callback, which only copies. A 1-D block is taken as
    mono already and returned as float32.
    """
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return block[:, 0].astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)


# ------------------------------------------------------------------------------ microphone


class MicSource:
    """A live input device through PortAudio, at the device's native rate and channel count.

    The device is resolved and the settings are validated in the constructor; :meth:`start` opens
    the stream. The PortAudio callback only copies into the ring and counts. A watchdog thread
    notices a device that stops delivering (unplugged, sound server gone) and reports it through
    :attr:`error` and :attr:`finished`.
    """

    realtime: bool = True
    FIRST_CALLBACK_TIMEOUT_S: float = 5.0
    """Time allowed for the first block: PulseAudio's idle sinks have taken 1.9 s to wake."""
    STALL_TIMEOUT_S: float = 2.0
    """Silence from the callback (not from the room) for this long means the device is lost."""
    WATCH_INTERVAL_S: float = 0.1

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate_hz: int | None = None,
        channels: int | None = None,
        block_s: float = 0.02,
    ) -> None:
        if block_s <= 0:
            raise ValueError(f"block_s must be positive, got {block_s}")
        self._sd = import_sounddevice()
        self.device: InputDevice = resolve_input_device(device, list_input_devices())
        # 0 is a value the user gave (and PortAudio refuses), not "use the default".
        self.sample_rate_hz: int = (
            self.device.default_samplerate_hz if sample_rate_hz is None else sample_rate_hz
        )
        self.channels: int = (
            min(self.device.max_input_channels, MAX_DEFAULT_CHANNELS)
            if channels is None
            else channels
        )
        self._check_settings()
        self.description: str = self.device.name
        self.block_frames: int = max(1, round(block_s * self.sample_rate_hz))
        self.finished = threading.Event()
        self.first_callback = threading.Event()
        """Set by the first block from the device, so a caller can wait until audio flows."""
        self.error: BaseException | None = None
        self.status_flags: int = 0
        """Callbacks that reported input overflow or another PortAudio status."""
        self.frames_captured: int = 0
        self.last_callback_wall_s: float = 0.0
        """``time.monotonic()`` at the latest callback, the capture time of the newest frame
        (the stream's start time until the first callback)."""
        self._ring: RingBuffer | None = None
        self._stream: Any = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._lifecycle = threading.Lock()
        self._fail_lock = threading.Lock()

    def _check_settings(self) -> None:
        """Ask PortAudio whether the device takes this rate and channel count, before opening.

        A refusal is one line that names what the device does accept.
        """
        d = self.device
        # Refused before PortAudio is asked, whose answer varies with the host API and device.
        check_input_rate(
            self.sample_rate_hz,
            f"input device {d.name!r} cannot record",
            f"valid choices: {self._valid_settings()}",
        )
        try:
            if self.channels > d.max_input_channels:
                # PortAudio refuses this too, but its ALSA host API first prints debug lines
                # to stderr, which would bury the one-line message.
                raise self._sd.PortAudioError("Invalid number of channels", PA_INVALID_CHANNELS)
            self._sd.check_input_settings(
                device=d.index,
                channels=self.channels,
                dtype="float32",
                samplerate=self.sample_rate_hz,
            )
        except Exception as e:
            raise SourceError(
                f"input device {d.name!r} cannot record {self.channels} channel(s) at "
                f"{self.sample_rate_hz} Hz ({one_line(e)}); valid choices: "
                f"{self._valid_settings()}"
            ) from e

    def _valid_settings(self) -> str:
        """The usual rates the device accepts, and its channel range, for an error message."""
        d = self.device
        channels = min(max(self.channels, 1), d.max_input_channels)
        rates = [r for r in STANDARD_RATES_HZ if self._accepts(channels, r)]
        if d.default_samplerate_hz not in rates and plausible_rate(d.default_samplerate_hz):
            rates = sorted([*rates, d.default_samplerate_hz])
        return (
            f"--samplerate {', '.join(str(r) for r in rates)} "
            f"(default {d.default_samplerate_hz} Hz), --channels 1 to {d.max_input_channels} "
            f"(at most {d.max_input_channels} input channel(s))"
        )

    def _accepts(self, channels: int, rate_hz: int) -> bool:
        try:
            self._sd.check_input_settings(
                device=self.device.index, channels=channels, dtype="float32", samplerate=rate_hz
            )
        except Exception:
            return False
        return True

    def ring_policy(self) -> Literal["overwrite", "block"]:
        return "overwrite"

    def __enter__(self) -> MicSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, ring: RingBuffer) -> None:
        """Open and start the input stream writing into ``ring``. A second call is a no-op."""
        with self._lifecycle:
            if self._stream is not None:
                return
            self._ring = ring
            self._stop.clear()
            self.finished.clear()
            self.first_callback.clear()
            self.error = None
            self.last_callback_wall_s = time.monotonic()
            stream: Any = None
            try:
                stream = self._sd.InputStream(
                    device=self.device.index,
                    samplerate=self.sample_rate_hz,
                    channels=self.channels,
                    dtype="float32",
                    blocksize=self.block_frames,
                    callback=self._callback,
                    finished_callback=self._on_stream_finished,
                )
                stream.start()
            except Exception as e:
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
                raise SourceError(
                    f"cannot open input device {self.description!r}: {one_line(e)}"
                ) from e
            self._stream = stream
            self._watchdog = threading.Thread(
                target=self._watch, name="streamser-mic-watchdog", daemon=True
            )
            self._watchdog.start()

    def stop(self) -> None:
        """Stop capture, close the stream and the ring, join the watchdog. Idempotent."""
        with self._lifecycle:
            self._stop.set()
            stream, self._stream = self._stream, None
            if stream is not None:
                # The device may already be gone; there is nothing left to undo then.
                with contextlib.suppress(Exception):
                    stream.abort()
                with contextlib.suppress(Exception):
                    stream.close()
            if self._watchdog is not None:
                self._watchdog.join(JOIN_TIMEOUT_S)
                self._watchdog = None
            if self._ring is not None:
                self._ring.close()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy, count, return. Nothing here allocates, logs or waits."""
        if status:
            self.status_flags += 1
        ring = self._ring
        if ring is not None:
            ring.write(indata)
        self.frames_captured += frames
        self.last_callback_wall_s = time.monotonic()
        if not self.first_callback.is_set():
            self.first_callback.set()

    def _on_stream_finished(self) -> None:
        """PortAudio calls this when the stream ends: expected after stop, otherwise a failure."""
        if not self._stop.is_set():
            self._fail(f"input device {self.description!r} stopped: the stream ended by itself")

    def _watch(self) -> None:
        """Detect a stream that silently stops calling back (a device unplugged mid-stream)."""
        while not self._stop.wait(self.WATCH_INTERVAL_S):
            waited_s = time.monotonic() - self.last_callback_wall_s
            limit_s = (
                self.STALL_TIMEOUT_S
                if self.first_callback.is_set()
                else self.FIRST_CALLBACK_TIMEOUT_S
            )
            if waited_s > limit_s:
                self._fail(
                    f"input device {self.description!r} delivered no audio for "
                    f"{waited_s:.1f} s: is it still connected?"
                )
                return

    def _fail(self, message: str) -> None:
        """Report a lost device once, from the watchdog or PortAudio's finished callback."""
        with self._fail_lock:
            if self.finished.is_set():
                return
            self.error = SourceError(message)
            self.finished.set()
        ring = self._ring
        if ring is not None:
            ring.close()


# ------------------------------------------------------------------------------ replay


class _ReplaySource:
    """Shared engine of :class:`FileSource` and :class:`ArraySource`: a thread writes blocks.

    In real time each block is written when a microphone would have delivered it: block ``k`` is
    due ``(k + 1) * block_s`` after the start, scheduled from the start time so waiting errors do
    not accumulate. Otherwise blocks go as fast as the ``"block"`` ring lets them, losslessly.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        channels: int,
        description: str,
        realtime: bool,
        block_s: float,
    ) -> None:
        if block_s <= 0:
            raise ValueError(f"block_s must be positive, got {block_s}")
        self.sample_rate_hz: int = sample_rate_hz
        self.channels: int = channels
        self.description: str = description
        self.realtime: bool = realtime
        self.block_frames: int = max(1, round(block_s * sample_rate_hz))
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.frames_delivered: int = 0
        self._ring: RingBuffer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lifecycle = threading.Lock()

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        """Yield ``(n, channels)`` float32 blocks of at most ``block_frames`` frames, in order."""
        raise NotImplementedError

    def ring_policy(self) -> Literal["overwrite", "block"]:
        return "overwrite" if self.realtime else "block"

    def __enter__(self: _Replay) -> _Replay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, ring: RingBuffer) -> None:
        """Start replaying from the beginning into ``ring``. A call while running is a no-op."""
        with self._lifecycle:
            if self._thread is not None and self._thread.is_alive():
                return
            self._ring = ring
            self._stop.clear()
            self.finished.clear()
            self.error = None
            self.frames_delivered = 0
            self._thread = threading.Thread(
                target=self._run, args=(ring,), name="streamser-replay", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the replay, close the ring (releasing a waiting writer), join. Idempotent."""
        with self._lifecycle:
            self._stop.set()
            if self._ring is not None:
                self._ring.close()
            if self._thread is not None:
                self._thread.join(JOIN_TIMEOUT_S)
                self._thread = None

    def _run(self, ring: RingBuffer) -> None:
        """The replay thread. Ends at end of data, on stop, or when someone closes the ring."""
        start_s = time.monotonic()
        blocks = self._blocks()
        completed = False
        try:
            for block in blocks:
                if self.realtime:
                    due_s = start_s + (self.frames_delivered + len(block)) / self.sample_rate_hz
                    if self._stop.wait(max(0.0, due_s - time.monotonic())):
                        return
                if self._stop.is_set() or ring.closed:
                    return
                ring.write(block)
                self.frames_delivered += len(block)
            completed = True
        except Exception as e:
            error = SourceError(f"cannot read {self.description}: {one_line(e)}")
            error.__cause__ = e
            self.error = error
        finally:
            blocks.close()
            if completed or self.error is not None:
                self.finished.set()
            ring.close()


class FileSource(_ReplaySource):
    """A WAV/FLAC/OGG file replayed block by block, never loaded whole.

    The file is opened and its header checked in the constructor, so a missing, empty or corrupt
    file fails with a one-line :class:`SourceError` before anything starts.
    """

    def __init__(self, path: str | Path, realtime: bool = True, block_s: float = 0.02) -> None:
        self.path = Path(path)
        sample_rate_hz, channels, total_frames = _probe_file(self.path)
        super().__init__(sample_rate_hz, channels, str(self.path), realtime, block_s)
        self.total_frames: int = total_frames

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        buffer = np.empty((self.block_frames, self.channels), dtype=np.float32)
        with soundfile.SoundFile(self.path) as f:
            while True:
                block = f.read(self.block_frames, dtype="float32", always_2d=True, out=buffer)
                if len(block) == 0:
                    return
                yield block  # a view into the reused buffer: the ring copies it


def _probe_file(path: Path) -> tuple[int, int, int]:
    """Check that ``path`` is an audio file soundfile can decode: (rate Hz, channels, frames)."""
    if not path.exists():
        raise SourceError(f"audio file not found: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a directory: give the path of an audio file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read {path}: {one_line(e)}") from e
    if size == 0:
        raise SourceError(f"audio file is empty (0 bytes): {path}")
    try:
        info = soundfile.info(str(path))
    except Exception as e:
        raise SourceError(
            f"cannot decode {path} as audio ({one_line(e)}): use a WAV, FLAC or OGG file"
        ) from e
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise SourceError(f"audio file holds no samples: {path}")
    check_input_rate(
        int(info.samplerate),
        f"{path} is sampled",
        "resample it first, e.g. with sox: sox INPUT -r 16000 OUTPUT.wav (if the header names "
        "the wrong rate, give the true one: sox -r TRUE_RATE INPUT OUTPUT.wav)",
    )
    return int(info.samplerate), int(info.channels), int(info.frames)


class ArraySource(_ReplaySource):
    """An in-memory ``(n, channels)`` (or ``(n,)``) array replayed like :class:`FileSource`.

    For tests and synthetic signals: it exercises the same pacing and ring behaviour as a file.
    """

    def __init__(
        self,
        samples: np.ndarray,
        sample_rate_hz: int,
        realtime: bool = True,
        block_s: float = 0.02,
    ) -> None:
        array = np.asarray(samples, dtype=np.float32)
        if array.ndim == 1:
            array = array[:, np.newaxis]
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"samples must have shape (n,) or (n, channels), got {array.shape}")
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        check_input_rate(sample_rate_hz, "samples", "resample them first (e.g. with soxr.resample)")
        super().__init__(
            sample_rate_hz, array.shape[1], f"<array {array.shape}>", realtime, block_s
        )
        self._samples = np.ascontiguousarray(array)
        self.total_frames: int = array.shape[0]

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        for first in range(0, self.total_frames, self.block_frames):
            yield self._samples[first : first + self.block_frames]
