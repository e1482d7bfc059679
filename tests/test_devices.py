"""Device listing and picking, against a fake PortAudio so no audio hardware is needed."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamser.audio.devices import (
    InputDevice,
    SourceError,
    format_device_table,
    import_sounddevice,
    list_input_devices,
    resolve_input_device,
)

HOSTAPIS = [{"name": "ALSA"}, {"name": "OSS"}]
RAW_DEVICES: list[dict[str, Any]] = [
    {"name": "HDA Intel PCH: ALC257 Analog (hw:0,0)", "hostapi": 0, "ch": 2, "rate": 44100.0},
    {"name": "HDA Intel PCH: HDMI 0 (hw:0,3)", "hostapi": 0, "ch": 0, "rate": 44100.0},
    {"name": "USB Audio Mic: USB Audio (hw:1,0)", "hostapi": 0, "ch": 1, "rate": 48000.0},
    {"name": "pulse", "hostapi": 0, "ch": 32, "rate": 44100.0},
    {"name": "pulse monitor", "hostapi": 0, "ch": 2, "rate": 44100.0},
    {"name": "default", "hostapi": 0, "ch": 32, "rate": 44100.0},
    {"name": "/dev/dsp", "hostapi": 1, "ch": 16, "rate": 44100.0},
]
DEFAULT_INDEX = 5
SUPPORTED_RATES_HZ = {8000, 16000, 22050, 44100, 48000}


class FakePortAudioError(Exception):
    """Stands in for ``sounddevice.PortAudioError``."""


class FakeInputStream:
    """Records how it was opened; the test drives its callbacks by hand."""

    def __init__(self, fake: FakeSoundDevice, **kwargs: Any) -> None:
        if fake.open_error is not None:
            raise fake.open_error
        self.kwargs = kwargs
        self.callback: Callable[..., None] = kwargs["callback"]
        self.finished_callback: Callable[[], None] = kwargs["finished_callback"]
        self.started = False
        self.closed = False
        fake.streams.append(self)

    def start(self) -> None:
        self.started = True

    def abort(self) -> None:
        if self.started:
            self.started = False
            self.finished_callback()

    def close(self) -> None:
        self.closed = True

    def deliver(self, block: np.ndarray, status: int = 0) -> None:
        """What PortAudio's thread does for each block."""
        self.callback(block, len(block), None, status)


class FakeSoundDevice(SimpleNamespace):
    """The slice of the ``sounddevice`` module that streamser uses, with a scripted device list."""

    PortAudioError = FakePortAudioError

    def __init__(
        self, raw_devices: list[dict[str, Any]] = RAW_DEVICES, default_index: int = DEFAULT_INDEX
    ) -> None:
        super().__init__()
        self.raw_devices = raw_devices
        self.default = SimpleNamespace(device=[default_index, -1])
        self.streams: list[FakeInputStream] = []
        self.open_error: Exception | None = None

    def query_devices(self) -> list[dict[str, Any]]:
        return [
            {
                "name": d["name"],
                "index": i,
                "hostapi": d["hostapi"],
                "max_input_channels": d["ch"],
                "max_output_channels": 2,
                "default_samplerate": d["rate"],
            }
            for i, d in enumerate(self.raw_devices)
        ]

    def query_hostapis(self) -> list[dict[str, Any]]:
        return HOSTAPIS

    def check_input_settings(
        self, device: int, channels: int, dtype: str, samplerate: float
    ) -> None:
        if not 1 <= channels <= self.raw_devices[device]["ch"]:
            raise FakePortAudioError("Invalid number of channels [PaErrorCode -9998]")
        if samplerate not in SUPPORTED_RATES_HZ:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def InputStream(self, **kwargs: Any) -> FakeInputStream:
        return FakeInputStream(self, **kwargs)


def install_fake_sounddevice(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    """Make ``import sounddevice`` return a fake for the rest of the test."""
    fake = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


class _PortAudioMissing(importlib.abc.MetaPathFinder):
    """Makes ``import sounddevice`` fail the way it does without libportaudio."""

    def find_spec(self, name: str, *args: object) -> None:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")


def hide_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import sounddevice`` raise OSError for the rest of the test."""
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_PortAudioMissing(), *sys.meta_path])


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    return install_fake_sounddevice(monkeypatch)


@pytest.fixture
def no_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_portaudio(monkeypatch)


def _devices() -> list[InputDevice]:
    return [
        InputDevice(i, d["name"], "ALSA", d["ch"], int(d["rate"]), i == DEFAULT_INDEX)
        for i, d in enumerate(RAW_DEVICES)
        if d["ch"] > 0
    ]


def _one_line_error(excinfo: pytest.ExceptionInfo[SourceError]) -> str:
    message = str(excinfo.value)
    assert message
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ resolution


@pytest.mark.parametrize(
    ("spec", "expected_index"),
    [
        (None, 5),
        (0, 0),
        ("2", 2),
        (" 3 ", 3),
        ("usb", 2),
        ("ALC257", 0),
        ("Default", 5),
        ("PULSE", 3),  # the exact name wins over "pulse monitor"
        ("monitor", 4),
        ("/dev/dsp", 6),
    ],
)
def test_resolves_index_name_part_and_default(spec: int | str | None, expected_index: int) -> None:
    assert resolve_input_device(spec, _devices()).index == expected_index


def test_ambiguous_name_lists_the_matches() -> None:
    with pytest.raises(SourceError) as excinfo:
        resolve_input_device("hw:", _devices())
    message = _one_line_error(excinfo)
    assert "2 input devices match 'hw:'" in message
    assert "0 'HDA Intel PCH: ALC257 Analog (hw:0,0)'" in message
    assert "2 'USB Audio Mic: USB Audio (hw:1,0)'" in message
    assert "default" not in message


def test_unknown_name_lists_the_valid_choices() -> None:
    with pytest.raises(SourceError) as excinfo:
        resolve_input_device("blue yeti", _devices())
    message = _one_line_error(excinfo)
    assert "'blue yeti'" in message
    for d in _devices():
        assert f"{d.index} {d.name!r}" in message


@pytest.mark.parametrize("spec", [1, "1", 99, -1])
def test_an_index_that_is_no_input_device_lists_the_valid_choices(spec: int | str) -> None:
    """Index 1 exists but has no input channels: it is not a choice."""
    with pytest.raises(SourceError) as excinfo:
        resolve_input_device(spec, _devices())
    message = _one_line_error(excinfo)
    assert f"no input device has index {spec}" in message
    assert "HDMI" not in message
    assert "5 'default'" in message


def test_no_default_device_asks_for_one() -> None:
    devices = [InputDevice(0, "mic", "ALSA", 1, 48000, is_default=False)]
    with pytest.raises(SourceError, match=r"no default input device.*--device") as excinfo:
        resolve_input_device(None, devices)
    _one_line_error(excinfo)


def test_empty_device_list_is_an_error() -> None:
    with pytest.raises(SourceError, match="no audio input device"):
        resolve_input_device("mic", [])


# ------------------------------------------------------------------------------ listing


def test_lists_only_input_devices_with_their_host_api_and_the_default(
    fake_sd: FakeSoundDevice,
) -> None:
    devices = list_input_devices()
    assert [d.index for d in devices] == [0, 2, 3, 4, 5, 6]
    assert [d.is_default for d in devices] == [False, False, False, False, True, False]
    assert devices[1] == InputDevice(
        index=2,
        name="USB Audio Mic: USB Audio (hw:1,0)",
        hostapi="ALSA",
        max_input_channels=1,
        default_samplerate_hz=48000,
        is_default=False,
    )
    assert devices[-1].hostapi == "OSS"


def test_no_input_device_is_a_one_line_error(fake_sd: FakeSoundDevice) -> None:
    fake_sd.raw_devices = [d for d in RAW_DEVICES if d["ch"] == 0]
    fake_sd.default.device = [-1, -1]
    with pytest.raises(SourceError, match="no audio input device found") as excinfo:
        list_input_devices()
    _one_line_error(excinfo)


def test_missing_portaudio_says_what_to_install(no_portaudio: None) -> None:
    with pytest.raises(SourceError) as excinfo:
        import_sounddevice()
    message = _one_line_error(excinfo)
    assert "libportaudio2" in message
    assert "portaudio" in message.replace("libportaudio2", "")
    assert isinstance(excinfo.value.__cause__, OSError)
    with pytest.raises(SourceError, match="libportaudio2"):
        list_input_devices()


def test_table_marks_the_default_and_aligns_columns() -> None:
    table = format_device_table(_devices())
    lines = table.splitlines()
    assert lines[0].split() == ["index", "name", "host", "API", "in", "ch", "rate", "Hz"]
    rows = lines[1:-1]
    assert len(rows) == len(_devices())
    starred = [r for r in rows if r.startswith("*")]
    assert len(starred) == 1
    assert " default " in starred[0]
    assert "(* = system default input)" in lines[-1]
    name_column = lines[0].index("name")
    assert all(r[name_column:].startswith(d.name) for r, d in zip(rows, _devices(), strict=True))
    assert rows[1].rstrip().endswith("48000")
