"""A live input device as an audio source.

See :mod:`streamser.audio.sources` for what every source does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from streamser.audio.devices import (
    InputDevice,
    SourceError,
    import_sounddevice,
    list_input_devices,
    one_line,
    resolve_input_device,
)
from streamser.audio.rates import check_input_rate, plausible_rate
from streamser.audio.sources import JOIN_TIMEOUT_S

if TYPE_CHECKING:
    from streamser.audio.ring import RingBuffer

MAX_DEFAULT_CHANNELS = 2
"""Channels opened when the user asks for none. Virtual ALSA devices (``default``, ``pulse``)
advertise 32 input channels; no microphone has more than two that matter for speech."""

STANDARD_RATES_HZ = (8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000)
"""Rates offered as valid choices when a device refuses the one asked for."""
PA_INVALID_CHANNELS = -9998
"""PortAudio's ``paInvalidChannelCount``."""


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
