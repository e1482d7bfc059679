"""Awkward audio inputs: every one gives a correct result or a one-line error (exit code 2).

Valid files of every kind (silence, DC offset, clipping, NaN/inf and huge samples, under 0.1 s,
1/2/6 channels, 8- to 32-bit integer and 32/64-bit float WAV, FLAC, OGG) go through ``streamser
listen --fast --headless --model demo`` (in-process, so each case costs only its analysis) and,
all together, through one ``streamser analyze`` process. Broken inputs (implausible sample rates
among them) and bad device settings go through real processes, where a traceback or a second
stderr line would show.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pulse
import pytest
import soundfile as sf
import soxr

from streamser.cli import main
from tests.test_listen_cli import SPEECH, env_for, streamser

pulse_null_sink = pulse.pulse_null_sink

SR = 22_050
"""Rate of the speech asset, used for most cases."""


def speech(seconds: float, rate_hz: int = SR) -> np.ndarray:
    """The asset's speech (mono float64, values on the 16-bit grid), at ``rate_hz``."""
    x, rate = sf.read(SPEECH, dtype="float64")
    x = x[: int(seconds * rate)]
    return x if rate_hz == rate else soxr.resample(x, rate, rate_hz)


def nonfinite_positions(n: int) -> dict[int, float]:
    return {100 + k: np.nan for k in range(50)} | {5_000: np.inf, 9_000: -np.inf, n - 1: np.nan}


@dataclass(frozen=True)
class Case:
    """One input file; ``same_as`` names a case whose probabilities must be identical."""

    name: str
    make: Callable[[], np.ndarray]
    rate_hz: int
    subtype: str
    suffix: str = ".wav"
    same_as: str | None = None
    tolerance: float = 1e-6
    nonfinite: int = 0

    @property
    def file_name(self) -> str:
        return self.name + self.suffix


def _with_nonfinite() -> np.ndarray:
    x = speech(3.4)
    for i, v in nonfinite_positions(len(x)).items():
        x[i] = v
    return x


def _with_huge(value: float) -> Callable[[], np.ndarray]:
    """Corrupt float data: magnitudes no audio has, where the NaN case has its NaN/inf."""

    def make() -> np.ndarray:
        x = speech(3.4)
        for k, i in enumerate(nonfinite_positions(len(x))):
            x[i] = value if k % 2 else -value
        return x

    return make


def six_channels(x: np.ndarray) -> np.ndarray:
    """Six copies at different gains; their mean is 0.5 x."""
    return np.stack([x * (k + 1) / 7 for k in range(6)], axis=1)


def _zeroed_where_nonfinite() -> np.ndarray:
    x = speech(3.4)
    for i in nonfinite_positions(len(x)):
        x[i] = 0.0
    return x


CASES = [
    Case("silence", lambda: np.zeros(int(3.5 * 16_000)), 16_000, "PCM_16"),
    Case("dc_offset", lambda: 0.3 * speech(3.4) + 0.6, SR, "FLOAT"),
    Case("clipping_float", lambda: 8.0 * speech(3.4), SR, "FLOAT", same_as="pcm_16"),
    Case("clipping_saturated_pcm", lambda: np.clip(8.0 * speech(3.4), -1, 1), SR, "PCM_16"),
    Case("nan_inf_float32", _with_nonfinite, SR, "FLOAT", same_as="nan_inf_zeroed", nonfinite=53),
    Case("nan_inf_float64", _with_nonfinite, SR, "DOUBLE", same_as="nan_inf_zeroed", nonfinite=53),
    Case("nan_inf_zeroed", _zeroed_where_nonfinite, SR, "FLOAT"),
    Case("huge_float32", _with_huge(1e30), SR, "FLOAT", same_as="nan_inf_zeroed", nonfinite=53),
    Case("huge_float64", _with_huge(1e300), SR, "DOUBLE", same_as="nan_inf_zeroed", nonfinite=53),
    Case("beyond_bound", _with_huge(2e10), SR, "FLOAT", same_as="nan_inf_zeroed", nonfinite=53),
    Case("short_50ms", lambda: speech(0.05), SR, "PCM_16"),
    Case("one_sample", lambda: np.array([0.25]), 16_000, "PCM_16"),
    Case("stereo", lambda: np.stack([speech(3.4), -0.5 * speech(3.4)], 1), SR, "PCM_16",
         same_as="pcm_16", tolerance=1e-4),
    Case("six_channels_48k", lambda: six_channels(speech(3.4, 48_000)), 48_000, "PCM_24",
         same_as="mono_48k", tolerance=1e-4),
    Case("mono_48k", lambda: speech(3.4, 48_000), 48_000, "FLOAT"),
    Case("pcm_u8", lambda: speech(3.4), SR, "PCM_U8"),
    Case("pcm_16", lambda: speech(3.4), SR, "PCM_16"),
    Case("pcm_24", lambda: speech(3.4), SR, "PCM_24", same_as="pcm_16"),
    Case("pcm_32", lambda: speech(3.4), SR, "PCM_32", same_as="pcm_16"),
    Case("float_32", lambda: speech(3.4), SR, "FLOAT", same_as="pcm_16"),
    Case("float_64", lambda: speech(3.4), SR, "DOUBLE", same_as="pcm_16"),
    Case("flac", lambda: speech(3.4), SR, "PCM_16", ".flac", same_as="pcm_16"),
    Case("ogg_vorbis", lambda: speech(3.4), SR, "VORBIS", ".ogg"),
]  # fmt: skip
"""Speech is on the 16-bit grid, so every lossless format holds exactly the same samples:
their estimates must be identical to the PCM_16 file's. Level does not matter to the model's
normalised input, so a channel mix or a gain gives the same probabilities as the mono file."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    for case in CASES:
        sf.write(d / case.file_name, case.make(), case.rate_hz, subtype=case.subtype)
    return d


def windows_for(path: Path, hop_s: float = 1.0, first_s: float = 1.0) -> int:
    """The README's count: a file of D seconds gives floor((D - first) / hop) + 1 windows,
    one if it is shorter than the first window."""
    info = sf.info(str(path))
    duration_s = info.frames / info.samplerate
    return 1 if duration_s < first_s else int((duration_s - first_s) // hop_s) + 1


def assert_valid_estimate(row: dict[str, Any]) -> None:
    p = np.asarray(row["probs"], dtype=np.float64)
    assert p.shape == (6,) and np.all(np.isfinite(p)), row
    assert np.all((p >= 0) & (p <= 1)) and abs(p.sum() - 1.0) < 1e-6, row
    assert 0.0 <= row["arousal"] <= 1.0 and -1.0 <= row["valence"] <= 1.0, row
    for key, lo in (("arousal_smooth", 0.0), ("valence_smooth", -1.0)):
        assert row[key] is None or lo <= row[key] <= 1.0, row
    assert row["speech"] is None or 0.0 <= row["speech"] <= 1.0
    assert row["skipped_windows"] == 0 and row["dropped_samples"] == 0


@contextlib.contextmanager
def streamser_logger_kept() -> Iterator[None]:
    """``main`` points the streamser logger at this test's stderr; put it back afterwards."""
    log = logging.getLogger("streamser")
    saved = (list(log.handlers), log.level, log.propagate)
    try:
        yield
    finally:
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


@dataclass(frozen=True)
class Run:
    """What a command gave: exit code, stdout, stderr (as ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def run_in_process(*args: str) -> Run:
    """``streamser ARGS`` through the same ``main`` as the console script, without paying a
    new interpreter's start (mostly importing torch) for every case."""
    out, err = io.StringIO(), io.StringIO()
    with streamser_logger_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return Run(rc, out.getvalue(), err.getvalue())


def listen_in_process(path: Path, *extra: str) -> Run:
    return run_in_process(
        "listen", "--input", str(path), "--fast", "--headless", "--model", "demo", *extra
    )


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def results(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, list[dict[str, Any]], str, dict[str, Any]]]:
    """Every case through ``listen``, once; the tests below read what each run gave."""
    env = pytest.MonkeyPatch()
    work = tmp_path_factory.mktemp("listen")
    env.setenv("STREAMSER_CONFIG", str(work / "no-config.toml"))
    env.setenv("STREAMSER_CACHE_DIR", str(work / "cache"))
    done = {}
    try:
        for case in CASES:
            log_dir = work / case.name
            run = listen_in_process(corpus / case.file_name, "--log-dir", str(log_dir))
            (session,) = log_dir.iterdir()
            meta = json.loads((session / "meta.json").read_text())
            done[case.name] = (run.returncode, run.rows(), run.stderr, meta)
    finally:
        env.undo()
    return done


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_listen_gives_the_window_formula_and_valid_estimates(
    case: Case, corpus: Path, results: dict[str, Any]
) -> None:
    rc, rows, stderr, meta = results[case.name]
    assert rc == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr.lower(), stderr
    path = corpus / case.file_name
    expected = windows_for(path)
    assert len(rows) == expected, (len(rows), expected)
    ends = [r["t_end_s"] for r in rows]
    info = sf.info(str(path))
    if info.frames / info.samplerate >= 1.0:
        assert ends == pytest.approx([1.0 + k for k in range(expected)])
    else:  # one window over the whole short file
        assert ends == pytest.approx([info.frames / info.samplerate], abs=1 / 16_000)
    for row in rows:
        assert_valid_estimate(row)
    counters = meta["counters"]
    assert meta["closed"] is True
    assert counters["estimates"] == counters["windows_due"] == expected
    assert counters["skipped_windows"] == counters["dropped_samples"] == 0
    assert counters["nonfinite_samples"] == case.nonfinite
    assert meta["audio"]["channels"] == info.channels
    assert meta["audio"]["sample_rate_hz"] == info.samplerate
    if case.same_as is not None:
        reference = np.array([r["probs"] for r in results[case.same_as][1]])
        mine = np.array([r["probs"] for r in rows])
        np.testing.assert_allclose(mine, reference, rtol=0, atol=case.tolerance)


def test_huge_samples_are_said_once_without_a_numpy_warning(corpus: Path, no_config: None) -> None:
    for name in ("huge_float32", "huge_float64", "nan_inf_float32"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow's RuntimeWarning would fail the run
            run = listen_in_process(corpus / f"{name}.wav", "--no-log")
        assert run.returncode == 0, run.stderr
        said = [line for line in run.stderr.splitlines() if "unusable samples" in line]
        assert len(said) == 1 and said[0].startswith("streamser: WARNING: "), run.stderr
        assert "RuntimeWarning" not in run.stderr and "Traceback" not in run.stderr


def test_digital_silence_is_never_speech(results: dict[str, Any]) -> None:
    rows = results["silence"][1]
    assert rows and all(r["is_speech"] is False and r["speech"] == 0.0 for r in rows)
    assert all(r["arousal_smooth"] is None for r in rows)  # silence does not feed smoothing


def test_speech_is_detected_through_clipping_and_dc_offset(results: dict[str, Any]) -> None:
    for name in ("pcm_16", "clipping_float", "clipping_saturated_pcm", "dc_offset"):
        assert any(r["is_speech"] for r in results[name][1]), name


def test_analyze_gives_the_window_formula_and_the_live_estimates_for_every_kind_of_file(
    corpus: Path, results: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "all.jsonl"
    r = streamser("analyze", str(corpus), "-o", str(out), "--model", "demo", env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "skipped" not in r.stderr
    assert "RuntimeWarning" not in r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for case in CASES:
        path = str(corpus / case.file_name)
        windows = [row for row in rows if row["file"] == path and row["type"] == "window"]
        (summary,) = [row for row in rows if row["file"] == path and row["type"] == "summary"]
        assert len(windows) == summary["windows"] == windows_for(Path(path)), case.name
        for row in windows:
            assert_valid_estimate(row)
        live = results[case.name][1]  # the README: offline reproduces live within 1e-4
        assert [w["t_end_s"] for w in windows] == [x["t_end_s"] for x in live], case.name
        np.testing.assert_allclose(
            [w["probs"] for w in windows], [x["probs"] for x in live], atol=1e-4, err_msg=case.name
        )


# ------------------------------------------------------------------------------ broken files


def _corrupt_header(d: Path) -> Path:
    good = d / "good.wav"
    sf.write(good, speech(1.5), SR, subtype="PCM_16")
    data = good.read_bytes()
    path = d / "corrupt_header.wav"
    path.write_bytes(data[:20] + b"\xff" * 16 + data[36:])  # the 'fmt ' chunk's fields
    return path


def _cut_inside_header(d: Path) -> Path:
    good = d / "good.wav"
    sf.write(good, speech(1.5), SR, subtype="PCM_16")
    path = d / "cut.wav"
    path.write_bytes(good.read_bytes()[:30])
    return path


def _zero_bytes(d: Path) -> Path:
    path = d / "empty.wav"
    path.touch()
    return path


def _text_named_wav(d: Path) -> Path:
    path = d / "notes.wav"
    path.write_text("not audio at all\n" * 100)
    return path


def _directory(d: Path) -> Path:
    path = d / "folder.wav"
    path.mkdir()
    return path


def _missing(d: Path) -> Path:
    return d / "no-such-file.wav"


def _sampled_at(rate_hz: int) -> Callable[[Path], Path]:
    """A file whose header names a rate no recording has (a mislabelled file)."""

    def make(d: Path) -> Path:
        path = d / f"at-{rate_hz}-hz.wav"
        sf.write(path, speech(0.5), rate_hz, subtype="PCM_16")
        return path

    return make


BROKEN = {
    "corrupt header": (_corrupt_header, "cannot decode"),
    "cut inside the header": (_cut_inside_header, "cannot decode"),
    "zero bytes": (_zero_bytes, "empty (0 bytes)"),
    "text named .wav": (_text_named_wav, "cannot decode"),
    "a directory": (_directory, "is a directory"),
    "nonexistent": (_missing, "not found"),
    "1 Hz": (_sampled_at(1), "at 1 Hz, below the 8000 to 384000 Hz"),
    "7 Hz": (_sampled_at(7), "resample it first, e.g. with sox"),
    "1 MHz": (_sampled_at(1_000_000), "at 1000000 Hz, above the 8000 to 384000 Hz"),
}


def assert_one_line_error(r: Any, *needles: str) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert lines[0].startswith("streamser: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("kind", list(BROKEN))
def test_listen_on_a_broken_input_is_one_line_with_exit_code_2(
    tmp_path: Path, kind: str, no_config: None
) -> None:
    make, needle = BROKEN[kind]
    path = make(tmp_path)
    assert_one_line_error(listen_in_process(path, "--no-log"), needle, str(path))


def test_a_broken_input_ends_the_real_process_with_one_line(tmp_path: Path) -> None:
    path = _corrupt_header(tmp_path)
    r = streamser(
        "listen", "--input", str(path), "--fast", "--headless", "--model", "demo", "--no-log",
        env=env_for(tmp_path),
    )  # fmt: skip
    assert_one_line_error(r, "cannot decode", str(path))


def test_truncated_audio_data_gives_the_windows_it_holds(tmp_path: Path, no_config: None) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, speech(4.4), SR, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 1])  # header still says 4.4 s; cut mid-sample
    run = listen_in_process(cut, "--no-log")
    assert run.returncode == 0, run.stderr
    assert len(run.rows()) == windows_for(cut) == 2  # what libsndfile can read: 2.2 s
    for row in run.rows():
        assert_valid_estimate(row)


@pytest.mark.parametrize("kind", ["corrupt header", "zero bytes", "nonexistent", "7 Hz"])
def test_analyze_of_a_single_broken_input_is_one_line_with_exit_code_2(
    tmp_path: Path, kind: str, no_config: None
) -> None:
    make, needle = BROKEN[kind]
    path = make(tmp_path)
    out = tmp_path / "out.jsonl"
    run = run_in_process("analyze", str(path), "-o", str(out), "--model", "demo")
    assert_one_line_error(run, needle, str(path))
    assert not out.exists()  # no empty result that looks like a finished analysis


def test_analyze_of_nothing_but_broken_files_fails_after_naming_each(
    tmp_path: Path, no_config: None
) -> None:
    d = tmp_path / "corpus"
    d.mkdir()
    paths = [_corrupt_header(d), _zero_bytes(d), _text_named_wav(d)]
    (d / "good.wav").unlink()
    out = tmp_path / "out.csv"
    run = run_in_process("analyze", str(d), "-o", str(out), "--model", "demo")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("streamser: error: ") and "none of the 3 files" in lines[-1]
    assert all(any(str(p) in line for line in lines) for p in paths)
    assert not out.exists() and list(tmp_path.glob(".out.csv*")) == []


# ------------------------------------------------------------------------------ devices


def _device_limits() -> tuple[int, int]:
    """(max input channels, default rate) of the sound server's ``default`` device."""
    from streamser.audio.devices import list_input_devices

    (device,) = [d for d in list_input_devices() if d.name == "default"]
    return device.max_input_channels, device.default_samplerate_hz


def device_error(capfd: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``listen`` on a device in-process; PortAudio's own C-level output would show on
    the file descriptors, which ``capfd`` captures, and must be empty."""
    capfd.readouterr()
    run = run_in_process("listen", "--headless", "--model", "demo", *args)
    leaked = capfd.readouterr()
    assert leaked.out == "" and leaked.err == "", leaked
    return assert_one_line_error(run, "valid choices")


@pytest.mark.system
def test_unknown_device_is_one_line_listing_the_devices(
    pulse_null_sink: pulse.PulseServer, capfd: pytest.CaptureFixture[str], no_config: None
) -> None:
    for device, needle in (("99", "no input device has index 99"), ("nosuchmic", "'nosuchmic'")):
        line = device_error(capfd, "--device", device)
        assert needle in line and "'default'" in line and "'pulse'" in line, line


@pytest.mark.system
def test_unsupported_settings_are_one_line_listing_what_the_device_takes(
    pulse_null_sink: pulse.PulseServer, capfd: pytest.CaptureFixture[str], no_config: None
) -> None:
    max_channels, default_rate = _device_limits()
    cases = [
        ("--samplerate", "1", "at 1 Hz"),
        ("--samplerate", "0", "at 0 Hz"),  # 0 is a mistake, not "the default"
        ("--channels", str(max_channels + 1), f"{max_channels + 1} channel(s)"),
        ("--channels", "0", "0 channel(s)"),
    ]
    for flag, value, needle in cases:
        line = device_error(capfd, "--device", "default", flag, value)
        assert needle in line, line
        # the rate the live-capture test opens this device at, and the device's own limits
        assert "16000" in line and f"default {default_rate} Hz" in line, line
        assert f"at most {max_channels} input channel" in line, line
