"""Input devices as PortAudio sees them: listing, printing, and picking one from user input.

Everything that talks to PortAudio's device list lives here, so the rest of streamser can import
without PortAudio installed: ``sounddevice`` is imported lazily, and its absence becomes a
:class:`SourceError` that says what to install. Picking a device from the ``--device`` argument is
a pure function over a device list (:func:`resolve_input_device`), so it is tested without audio
hardware.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from streamser.errors import StreamserError


class SourceError(StreamserError):
    """A user-facing problem opening audio input; ``str(e)`` is one line that says what to do.

    Defined here, the lowest layer that raises it; :mod:`streamser.audio.sources` re-exports it.
    """


@dataclass(frozen=True)
class InputDevice:
    """One PortAudio device that can record, with the figures a user picks a device by."""

    index: int
    """PortAudio's device index; valid until PortAudio is re-initialised."""
    name: str
    hostapi: str
    """Name of the host API (ALSA, Core Audio, WASAPI, ...) the device belongs to."""
    max_input_channels: int
    default_samplerate_hz: int
    """The device's preferred rate: opening at it avoids a resampler in the OS."""
    is_default: bool
    """True for the system's default input device."""


def import_sounddevice() -> ModuleType:
    """Import ``sounddevice``, turning a missing PortAudio library into a :class:`SourceError`.

    The import is deferred to here because ``sounddevice`` loads the PortAudio shared library at
    import time and raises OSError without it; the model and the file replay must work anyway.
    """
    try:
        import sounddevice
    except OSError as e:
        raise SourceError(
            "the PortAudio library is not installed: install libportaudio2 (Debian/Ubuntu: "
            "apt-get install libportaudio2) or portaudio (macOS: brew install portaudio)"
        ) from e
    return sounddevice


def list_input_devices() -> list[InputDevice]:
    """All devices with at least one input channel, in PortAudio's order.

    Raises :class:`SourceError` when PortAudio is missing or finds no input device at all.
    """
    sd = import_sounddevice()
    try:
        raw_devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_index = _default_input_index(sd)
    except sd.PortAudioError as e:
        raise SourceError(f"cannot query audio devices: {one_line(e)}") from e
    devices = [
        InputDevice(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(hostapis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            default_samplerate_hz=round(float(d["default_samplerate"])),
            is_default=int(d["index"]) == default_index,
        )
        for d in raw_devices
        if int(d["max_input_channels"]) > 0
    ]
    if not devices:
        raise SourceError(
            "no audio input device found: connect a microphone (and check that the sound "
            "server is running), or analyse a file instead"
        )
    return devices


def _default_input_index(sd: ModuleType) -> int:
    """PortAudio's default input device index, or -1 when there is none."""
    default = sd.default.device[0]
    if default is None or default == -1:
        return -1
    if isinstance(default, str):
        return int(sd.query_devices(default, "input")["index"])
    return int(default)


def format_device_table(devices: Sequence[InputDevice]) -> str:
    """A plain-text table of input devices, the default marked with ``*``, for ``--list``."""
    headers = ("", "index", "name", "host API", "in ch", "rate Hz")
    rows = [
        (
            "*" if d.is_default else "",
            str(d.index),
            d.name,
            d.hostapi,
            str(d.max_input_channels),
            str(d.default_samplerate_hz),
        )
        for d in devices
    ]
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    right_aligned = {1, 4, 5}

    def fmt(row: tuple[str, ...]) -> str:
        cells = (
            cell.rjust(w) if i in right_aligned else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    lines = [fmt(headers), *(fmt(r) for r in rows), "(* = system default input)"]
    return "\n".join(lines)


def resolve_input_device(spec: int | str | None, devices: Sequence[InputDevice]) -> InputDevice:
    """Pick the device the user meant: an index, a case-insensitive part of a name, or None.

    ``None`` means the system default. A string of digits is an index, as the command line passes
    everything as text. A name that matches several devices is an error unless exactly one of
    them matches in full, so ``--device pulse`` still works beside ``pulse monitor``.
    """
    if not devices:
        raise SourceError("no audio input device found: connect a microphone")
    if spec is None:
        for d in devices:
            if d.is_default:
                return d
        raise SourceError(
            f"there is no default input device: pick one with --device; {_choices(devices)}"
        )
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        for d in devices:
            if d.index == index:
                return d
        raise SourceError(f"no input device has index {index}; {_choices(devices)}")
    wanted = spec.strip().casefold()
    matches = [d for d in devices if wanted in d.name.casefold()]
    exact = [d for d in matches if d.name.casefold() == wanted]
    if len(matches) == 1:
        return matches[0]
    if len(exact) == 1:
        return exact[0]
    if not matches:
        raise SourceError(f"no input device name contains {spec!r}; {_choices(devices)}")
    raise SourceError(
        f"{len(matches)} input devices match {spec!r}, give more of the name or the index: "
        + _listing(matches)
    )


def _choices(devices: Sequence[InputDevice]) -> str:
    return "valid choices: " + _listing(devices)


def _listing(devices: Sequence[InputDevice]) -> str:
    return ", ".join(f"{d.index} {d.name!r}" for d in devices)


def one_line(e: BaseException) -> str:
    """The first line of an exception's message, so a SourceError that quotes it stays one line."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def refresh_portaudio() -> None:
    """Re-read PortAudio's device list (it is cached at initialisation).

    Needed to find a device that came back, or a sound server that restarted, while streamser
    runs. Only call it with no stream open.
    """
    sd = import_sounddevice()
    sd._terminate()
    sd._initialize()
