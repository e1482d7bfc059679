"""Sample rates no recording has (a header that says 7 Hz, a ``--samplerate 1``) are refused by
every source, before anything starts, with one line that says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_devices import FakeSoundDevice, install_fake_sounddevice

from streamser.audio.mic import MicSource
from streamser.audio.native import read_audio_file
from streamser.audio.rates import check_input_rate, plausible_rate
from streamser.audio.replay import ArraySource, FileSource
from streamser.audio.sources import SourceError
from streamser.constants import MAX_INPUT_RATE_HZ, MIN_INPUT_RATE_HZ

IMPLAUSIBLE_RATES_HZ = [1, 7, 4_000, MIN_INPUT_RATE_HZ - 1, MAX_INPUT_RATE_HZ + 1, 1_000_000]


def assert_one_line(error: BaseException, *needles: str) -> None:
    message = str(error)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_the_accepted_rates_are_the_declared_bounds() -> None:
    assert (MIN_INPUT_RATE_HZ, MAX_INPUT_RATE_HZ) == (8_000, 384_000)
    assert plausible_rate(MIN_INPUT_RATE_HZ) and plausible_rate(MAX_INPUT_RATE_HZ)
    for rate in IMPLAUSIBLE_RATES_HZ:
        assert not plausible_rate(rate)
        with pytest.raises(SourceError) as excinfo:
            check_input_rate(rate, "x is sampled", "do this")
        assert_one_line(excinfo.value, f"x is sampled at {rate} Hz", "8000", "384000", "do this")


@pytest.mark.parametrize("rate_hz", IMPLAUSIBLE_RATES_HZ)
def test_files_at_implausible_rates_are_refused_saying_how_to_resample(
    tmp_path: Path, rate_hz: int
) -> None:
    path = tmp_path / f"at-{rate_hz}.wav"
    sf.write(path, np.full(200, 0.1), rate_hz, subtype="FLOAT")
    assert sf.info(str(path)).samplerate == rate_hz
    for open_file in (FileSource, read_audio_file):  # replay and offline analysis
        with pytest.raises(SourceError) as excinfo:
            open_file(path)
        assert_one_line(excinfo.value, str(path), f"at {rate_hz} Hz", "resample", "sox")


@pytest.mark.parametrize("rate_hz", [MIN_INPUT_RATE_HZ, 11_025, 96_000, MAX_INPUT_RATE_HZ])
def test_files_at_plausible_rates_still_open(tmp_path: Path, rate_hz: int) -> None:
    path = tmp_path / f"at-{rate_hz}.flac"
    sf.write(path, np.full(rate_hz // 10, 0.1), rate_hz, subtype="PCM_16")
    assert FileSource(path).sample_rate_hz == rate_hz
    assert read_audio_file(path).sample_rate_hz == rate_hz


@pytest.fixture
def permissive_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    """A device that accepts any rate, as some host APIs' virtual devices claim to."""
    fake = install_fake_sounddevice(monkeypatch)
    monkeypatch.setattr(fake, "check_input_settings", lambda **_: None)
    return fake


@pytest.mark.parametrize("rate_hz", [0, *IMPLAUSIBLE_RATES_HZ])
def test_a_mic_at_an_implausible_rate_is_refused_even_when_the_device_accepts_it(
    permissive_sd: FakeSoundDevice, rate_hz: int
) -> None:
    with pytest.raises(SourceError) as excinfo:
        MicSource("default", sample_rate_hz=rate_hz)
    assert_one_line(
        excinfo.value, "'default'", f"at {rate_hz} Hz", "valid choices: --samplerate", "8000"
    )
    assert excinfo.value.__cause__ is None  # refused by streamser, not by PortAudio


def test_a_mic_at_a_plausible_rate_still_opens(permissive_sd: FakeSoundDevice) -> None:
    assert MicSource("default", sample_rate_hz=MIN_INPUT_RATE_HZ).sample_rate_hz == 8_000
    assert MicSource("default").sample_rate_hz == 44_100


@pytest.mark.parametrize("rate_hz", [7, MAX_INPUT_RATE_HZ + 1])
def test_arrays_at_implausible_rates_are_refused(rate_hz: int) -> None:
    with pytest.raises(SourceError) as excinfo:
        ArraySource(np.zeros(100, np.float32), rate_hz)
    assert_one_line(excinfo.value, f"at {rate_hz} Hz", "resample")
