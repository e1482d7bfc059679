"""``streamser analyze``: its output checked before the model loads, each input analysed once,
private files, the provenance file, a session's own model, and a session's unrecorded windows.

Everything runs in-process (``main``) with the demo model; sessions are built by hand (meta.json
and audio segments written by the recorder itself), so a recording can start late or pause.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamser.config import ModelConfig
from streamser.labels import DEMO_WARNING
from streamser.session.recorder import AudioRecorder
from tests.conftest import DATA_DIR
from tests.test_listen_cli import SPEECH
from tests.test_reliability_inputs import Run, assert_one_line_error, run_in_process
from tests.test_sessions_cli import read_any

TINY_MODEL = str(DATA_DIR / "tiny-parametrized")


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a wrong model choice fails fast, never downloads


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ModelConfig]]:
    """The model configs ``analyze`` asked for; each load gets the demo model (so the choice
    can be checked without the real weights)."""
    import streamser.commands.listen as listen

    real = listen.load_for
    asked: list[ModelConfig] = []

    def load_for(cfg: ModelConfig) -> Any:
        asked.append(cfg)
        return real(ModelConfig(model="demo"))

    monkeypatch.setattr(listen, "load_for", load_for)
    yield asked


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model fails the test: the error had to come first."""
    import streamser.commands.listen as listen

    def load_for(cfg: ModelConfig) -> Any:
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(listen, "load_for", load_for)


def analyze(*args: str, model: str | None = "demo") -> Run:
    return run_in_process("analyze", *args, *(["--model", model] if model else []))


def rows_of(out: Path) -> list[dict[str, Any]]:
    return read_any(out)


def speech_file(path: Path, seconds: float = 4.0) -> Path:
    x, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    sf.write(path, x[: round(seconds * rate)], rate, subtype="FLOAT")
    return path


def make_session(
    path: Path,
    spans_s: list[tuple[float, float]],
    model: dict[str, Any] | None = None,
    signal: np.ndarray | None = None,
    rate: int | None = None,
) -> Path:
    """A closed session whose recording holds ``signal`` (default: the speech clip) over
    ``spans_s`` only, written by the recorder as a live run would (start, write, stop)."""
    if signal is None:
        signal, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    assert rate is not None
    path.mkdir(parents=True)
    meta: dict[str, Any] = {"session_id": path.name, "closed": True}
    meta["model"] = {"name": "demo", "revision": None} if model is None else model
    (path / "meta.json").write_text(json.dumps(meta))
    recorder = AudioRecorder(path, rate, signal.shape[1], segment_s=2.0)
    for a, b in spans_s:
        first, end = round(a * rate), min(len(signal), round(b * rate))
        recorder.start(first)
        recorder.write(first, signal[first:end])
        recorder.stop()
    return path


# ----------------------------------------------------------------------------- the output


def _unwritable_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o500)
        return d
    assert Path("/sys").is_dir(), "as root, only sysfs refuses new files"
    return Path("/sys")  # sysfs refuses new files even to root


OUTPUT_PROBLEMS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing directory": (lambda t: t / "missing" / "dir" / "x.jsonl", "does not exist"),
    "a directory": (lambda t: _mkdir(t / "result.jsonl"), "is a directory"),
    "unwritable directory": (lambda t: _unwritable_dir(t) / "x.csv", "cannot write in"),
    "parent is a file": (lambda t: _touch(t / "file") / "x.jsonl", "is not a directory"),
    "unknown suffix": (lambda t: t / "x.txt", "use a name ending in .jsonl"),
    "corrupt parquet": (lambda t: _touch(t / "x.parquet", b"not parquet"), "does not read back"),
    "progress file in the way": (
        lambda t: _mkdir(t / ".x.csv.progress.jsonl").with_name("x.csv"),
        "in the way",
    ),
}


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _touch(p: Path, data: bytes = b"") -> Path:
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("kind", list(OUTPUT_PROBLEMS))
def test_an_output_that_cannot_be_written_is_one_line_before_the_model_loads(
    tmp_path: Path, kind: str, no_model: None
) -> None:
    make, needle = OUTPUT_PROBLEMS[kind]
    out = make(tmp_path)
    audio = speech_file(tmp_path / "a.wav", 1.5)
    line = assert_one_line_error(analyze(str(audio), "-o", str(out)), needle)
    assert "-o" in line, line
    assert not provenance(out).exists()


# ----------------------------------------------------------------------------- each input once


def test_each_input_is_analysed_once_however_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    a = speech_file(corpus / "a.wav", 1.5)
    b = speech_file(corpus / "b.wav", 2.5)
    (tmp_path / "link.wav").symlink_to(a)
    session = make_session(corpus / "sessions" / "s1", [(0.0, 2.0)])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    names = [str(b), "corpus/b.wav", "./corpus//b.wav", "link.wav", str(corpus), str(session)]
    r = analyze(*names, "-o", str(out))
    assert r.returncode == 0, r.stderr
    summaries = [row["file"] for row in rows_of(out) if row["type"] == "summary"]
    # first mentions, in order: b named, a through the link, the session found under corpus
    assert summaries == [str(b), "link.wav", str(session)]
    assert not any("seg0" in f for f in summaries)  # a session is taken whole
    inputs = json.loads(provenance(out).read_text())["inputs"]
    assert [i["file"] for i in inputs] == summaries

    rows = rows_of(out)
    again = analyze(str(tmp_path / "corpus" / "b.wav"), str(a), "-o", str(out))
    assert again.returncode == 0 and "2 file(s) already done" in again.stderr
    assert rows_of(out) == rows


# ----------------------------------------------------------------------------- private files


def provenance(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_results_and_provenance_are_private_whatever_the_umask(
    tmp_path: Path, suffix: str, open_umask: None
) -> None:
    out = tmp_path / f"out{suffix}"
    audio = speech_file(tmp_path / "a.wav", 1.5)
    if suffix == ".jsonl":  # left readable by an earlier version: made private on resume
        out.write_text("")
        out.chmod(0o644)
    r = analyze(str(audio), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert {p.name: oct(_mode(p)) for p in tmp_path.iterdir() if p != audio} == {
        out.name: oct(0o600),
        provenance(out).name: oct(0o600),
    }  # no temporary or progress file left behind either
    more = speech_file(tmp_path / "b.wav", 2.0)
    assert analyze(str(audio), str(more), "-o", str(out)).returncode == 0  # rewritten: still
    assert _mode(out) == _mode(provenance(out)) == 0o600


# ----------------------------------------------------------------------------- provenance


def test_the_provenance_file_names_model_compute_settings_and_inputs(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    a = speech_file(corpus / "a.wav", 1.5)
    broken = corpus / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "out.parquet"
    r = analyze(str(corpus), "-o", str(out), "--hop", "0.5", "--batch", "3", "--no-vad")
    assert r.returncode == 0, r.stderr
    meta = json.loads(provenance(out).read_text())
    assert meta["streamser_version"]
    assert meta["model"]["name"] == "demo" and meta["model"]["demo"] is True
    assert meta["model"]["warning"] == DEMO_WARNING
    assert {"revision", "sha256", "sha256_status"} <= set(meta["model"])
    assert meta["compute"] == {"device": "cpu", "dtype": "float32", "backend": "torch"}
    assert meta["windows"]["hop_s"] == 0.5 and meta["windows"]["vad"] is False
    assert {"first_s", "smooth_s", "vad_threshold", "skip_non_speech"} <= set(meta["windows"])
    assert meta["batch"] == 3
    by_file = {i["file"]: i for i in meta["inputs"]}
    assert by_file[str(a)]["status"] == "done"
    assert by_file[str(broken)]["status"] == "skipped"
    assert by_file[str(broken)]["reason"]
    import pyarrow.parquet as pq

    embedded = pq.read_schema(out).metadata[b"streamser"]
    assert json.loads(embedded) == meta

    b = speech_file(corpus / "b.wav", 2.0)  # resumed: the file is updated, not replaced
    again = analyze(str(corpus), "-o", str(out), "--hop", "0.5", "--batch", "3", "--no-vad")
    assert again.returncode == 0, again.stderr
    meta2 = json.loads(provenance(out).read_text())
    statuses = {i["file"]: i["status"] for i in meta2["inputs"]}
    assert statuses == {str(a): "done", str(broken): "skipped", str(b): "done"}
    assert [run["analysed"] for run in meta2["runs"]] == [1, 1]
    assert json.loads(pq.read_schema(out).metadata[b"streamser"]) == meta2


def test_an_interrupted_run_leaves_a_provenance_file_saying_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamser.session.analysis as analysis

    a = speech_file(tmp_path / "a.wav", 1.5)
    b = speech_file(tmp_path / "b.wav", 2.0)
    real = analysis.file_rows

    def file_rows(info: Any, *rest: Any) -> Any:
        if info.path == str(b):
            raise RuntimeError("interrupted")
        return real(info, *rest)

    monkeypatch.setattr(analysis, "file_rows", file_rows)
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="interrupted"):
        analyze(str(a), str(b), "-o", str(out))
    meta = json.loads(provenance(out).read_text())
    assert [(i["file"], i["status"]) for i in meta["inputs"]] == [
        (str(a), "done"),
        (str(b), "pending"),
    ]
    assert meta["runs"][-1]["finished"] is None and meta["runs"][-1]["analysed"] == 1
    assert _mode(provenance(out)) == 0o600


def test_resuming_with_other_settings_or_another_model_is_refused(tmp_path: Path) -> None:
    a = speech_file(tmp_path / "a.wav", 1.5)
    b = speech_file(tmp_path / "b.wav", 2.0)
    out = tmp_path / "out.jsonl"
    assert analyze(str(a), "-o", str(out)).returncode == 0
    before = out.read_bytes()
    r = analyze(str(a), str(b), "-o", str(out), "--hop", "0.5")
    assert "hop_s 1.0 there, 0.5 now" in assert_one_line_error(r, "-o", "another -o")
    r = analyze(str(a), str(b), "-o", str(out), model=TINY_MODEL)  # known once it has loaded
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("streamser: error: -o ") and "holds results of model demo," in last
    assert "--model" in last
    assert out.read_bytes() == before


# ----------------------------------------------------------------------------- the session's model


def test_a_session_is_analysed_with_the_model_it_was_recorded_with(
    tmp_path: Path, loads: list[ModelConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = {"name": TINY_MODEL, "revision": None}
    s1 = make_session(tmp_path / "s1", [(0.0, 2.0)], model=tiny)
    s2 = make_session(tmp_path / "s2", [(0.0, 2.0)], model=tiny)
    r = analyze(str(s1), str(s2), "-o", str(tmp_path / "a.jsonl"), model=None)
    assert r.returncode == 0, r.stderr
    assert loads[-1].model == TINY_MODEL
    assert sum("as recorded live" in line for line in r.stderr.splitlines()) == 1

    int8 = make_session(tmp_path / "s3", [(0.0, 2.0)], {"name": "demo (int8)", "revision": None})
    r = analyze(str(int8), "-o", str(tmp_path / "b.jsonl"), model=None)
    assert r.returncode == 0 and loads[-1].model == "demo"

    hub = {"name": "someone/model", "revision": "abc123"}
    s4 = make_session(tmp_path / "s4", [(0.0, 2.0)], model=hub)
    r = analyze(str(s4), "-o", str(tmp_path / "c.jsonl"), model=None)
    assert r.returncode == 0 and (loads[-1].model, loads[-1].revision) == (
        "someone/model",
        "abc123",
    )

    given = analyze(str(s1), "-o", str(tmp_path / "d.jsonl"), model="demo")  # --model wins
    assert (
        given.returncode == 0 and loads[-1].model == "demo" and "recorded live" not in given.stderr
    )

    config = tmp_path / "config.toml"  # so does the config file's model
    config.write_text('model = "demo"\n')
    monkeypatch.setenv("STREAMSER_CONFIG", str(config))
    from_file = analyze(str(s1), "-o", str(tmp_path / "e.jsonl"), model=None)
    assert from_file.returncode == 0 and loads[-1].model == "demo"
    assert "recorded live" not in from_file.stderr


def test_a_session_model_that_is_gone_is_one_line_naming_model(tmp_path: Path) -> None:
    gone = make_session(tmp_path / "s1", [(0.0, 2.0)], {"name": str(tmp_path / "gone")})
    r = analyze(str(gone), "-o", str(tmp_path / "a.jsonl"), model=None)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("streamser: error: model directory") and "--model" in last


def test_sessions_of_different_models_need_model_named(tmp_path: Path, no_model: None) -> None:
    s1 = make_session(tmp_path / "s1", [(0.0, 2.0)])
    s2 = make_session(tmp_path / "s2", [(0.0, 2.0)], model={"name": TINY_MODEL})
    r = analyze(str(s1), str(s2), "-o", str(tmp_path / "a.jsonl"), model=None)
    assert_one_line_error(r, "different models", "demo (s1)", "s2", "--model")
    s3 = make_session(tmp_path / "s3", [(0.0, 2.0)], model={})
    r = analyze(str(s1), str(s3), "-o", str(tmp_path / "a.jsonl"), model=None)
    assert_one_line_error(r, "not recorded (s3)", "--model")


def test_a_file_among_the_inputs_keeps_the_default_model(
    tmp_path: Path, loads: list[ModelConfig]
) -> None:
    s1 = make_session(tmp_path / "s1", [(0.0, 2.0)])
    audio = speech_file(tmp_path / "a.wav", 1.5)
    r = analyze(str(s1), str(audio), "-o", str(tmp_path / "a.jsonl"), model=None)
    assert r.returncode == 0, r.stderr
    assert loads[-1].model == ModelConfig().model and "recorded live" not in r.stderr


# ----------------------------------------------------------------------------- unrecorded windows


def windows_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["type"] == "window"]


@pytest.mark.parametrize(
    ("spans", "unrecorded", "partly"),
    [
        # recording started at 5 s: windows ending by 5 s hold nothing, [3, 6) and [4, 7) some
        ([(5.0, 10.0)], [1, 2, 3, 4, 5], [6, 7]),
        # muted from 3 s to 6 s: [3, 6) holds nothing; [1, 4), [2, 5), [4, 7), [5, 8) some
        ([(0.0, 3.0), (6.0, 10.0)], [6], [4, 5, 7, 8]),
    ],
    ids=["started late", "muted"],
)
def test_windows_without_recorded_audio_are_left_out_and_counted(
    tmp_path: Path, spans: list[tuple[float, float]], unrecorded: list[int], partly: list[int]
) -> None:
    x, rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    x = x[: 10 * rate]
    session = make_session(tmp_path / "s1", spans, signal=x, rate=rate)
    out = tmp_path / "out.jsonl"
    r = analyze(str(session), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = rows_of(out)
    ends = [round(w["t_end_s"]) for w in windows_of(rows)]
    assert ends == [e for e in range(1, 11) if e not in unrecorded]
    assert [round(w["t_end_s"]) for w in windows_of(rows) if w.get("partly_recorded")] == partly
    assert all(w.get("partly_recorded") in (None, True) for w in windows_of(rows))
    (summary,) = [row for row in rows if row["type"] == "summary"]
    assert summary["unrecorded_windows"] == len(unrecorded)
    assert summary["windows"] == 10 - len(unrecorded)
    assert f"{len(unrecorded)} window(s) left out" in r.stderr
    assert f"{len(unrecorded)} window(s) without recorded audio left out" in r.stderr

    # The windows kept are those of the recording with its gaps as silence, computed the same
    # way (the left-out ones never reached the model, nor the smoothing: VAD calls them silent).
    silent = np.zeros_like(x)
    for a, b in spans:
        silent[round(a * rate) : round(b * rate)] = x[round(a * rate) : round(b * rate)]
    plain = tmp_path / "plain.wav"
    sf.write(plain, silent, rate, subtype="FLOAT")
    ref = tmp_path / "ref.jsonl"
    assert analyze(str(plain), "-o", str(ref)).returncode == 0
    by_window = {w["window"]: w for w in windows_of(rows_of(ref))}
    for w in windows_of(rows):
        want = by_window[w["window"]]
        assert (w["t_start_s"], w["t_end_s"], w["is_speech"]) == (
            want["t_start_s"], want["t_end_s"], want["is_speech"],
        )  # fmt: skip
        np.testing.assert_allclose(w["probs"], want["probs"], atol=1e-4)
        if w["arousal_smooth"] is not None:
            assert w["arousal_smooth"] == pytest.approx(want["arousal_smooth"], abs=1e-4)

    csv_out = tmp_path / "out.csv"
    assert analyze(str(session), "-o", str(csv_out)).returncode == 0
    table = rows_of(csv_out)
    flags = [row["partly_recorded"] for row in table if row["type"] == "window"]
    assert flags.count("True") == len(partly) and flags.count("False") == 10 - len(
        unrecorded
    ) - len(partly)
    assert [row["unrecorded_windows"] for row in table if row["type"] == "summary"] == [
        str(len(unrecorded))
    ]
