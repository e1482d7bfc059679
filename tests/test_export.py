"""``streamser export``: sessions as ELAN, Praat and CSV files, read back by independent readers
(pympi-ling for .eaf, praatio for .TextGrid, the csv module) and checked against the log."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pympi
import pytest
import soundfile as sf
from praatio import textgrid

from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES
from streamser.session.export import (
    AROUSAL_RANGE,
    BIN_NAMES,
    STREAM_TIERS,
    VALENCE_RANGE,
    affect_bin,
    hop_intervals,
)
from streamser.session.recorder import AudioRecorder, read_recording
from tests.test_listen_cli import SPEECH, TINY, env_for, streamser

MARK_AT_S = 4.25
NOTES_AT_MARK = ('laughed "loudly"', "door")
LATER_MARK = (9.5, "phone rang")


def listen_fast(root: Path, audio: Path, *extra: str) -> Path:
    """A real ``listen`` run over ``audio``, as fast as possible, with the tiny model."""
    log_dir = root / "sessions"
    r = streamser(
        "listen", "--input", str(audio), "--fast", "--headless", "--model", TINY,
        "--log-dir", str(log_dir), *extra, env=env_for(root),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (session,) = log_dir.iterdir()
    return session


@pytest.fixture(scope="module")
def mono_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One recorded mono session with three marks, two of them at the same time."""
    root = tmp_path_factory.mktemp("mono")
    session = listen_fast(root, SPEECH, "--record")
    for t_s, note in [*((MARK_AT_S, n) for n in NOTES_AT_MARK), LATER_MARK]:
        r = streamser("mark", str(session), note, "--at", str(t_s), env=env_for(root))
        assert r.returncode == 0, r.stderr
    return session


@pytest.fixture(scope="module")
def two_voice_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``--per-channel`` session: alice speaks throughout, bob only in the second half."""
    root = tmp_path_factory.mktemp("two-voices")
    speech, rate = sf.read(SPEECH, dtype="float32")
    bob = np.zeros_like(speech)
    half = len(speech) // 2
    bob[half:] = speech[: len(speech) - half]
    stereo = root / "two.wav"
    sf.write(stereo, np.stack([speech, bob], axis=1), rate)
    return listen_fast(root, stereo, "--per-channel", "--stream-names", "alice,bob")


def export(session: Path, out: Path, *extra: str) -> Any:
    return streamser("export", str(session), "-o", str(out), *extra, env=env_for(out.parent))


def logged(session: Path) -> list[dict[str, Any]]:
    lines = (session / "estimates.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def expected_intervals(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float]]:
    """The documented rule, applied to the raw log: each estimate covers the time since its
    stream's previous window end, at most its own window."""
    out = []
    last_end: float | None = None
    for r in sorted(records, key=lambda r: (r["t_end_s"], r["seq"])):
        start = r["t_start_s"] if last_end is None else max(r["t_start_s"], last_end)
        if r["t_end_s"] > start:
            out.append((r, start, r["t_end_s"]))
        last_end = r["t_end_s"] if last_end is None else max(last_end, r["t_end_s"])
    return out


def speech_segments(intervals: list[tuple[dict[str, Any], float, float]]) -> list[list[float]]:
    segments: list[list[float]] = []
    for r, start, end in intervals:
        if not r["is_speech"]:
            continue
        if segments and segments[-1][1] == start:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    return segments


def eaf_tier(eaf: Any, name: str) -> list[tuple[int, int, str]]:
    return sorted(eaf.get_annotation_data_for_tier(name))


def check_stream_tiers(
    records: list[dict[str, Any]],
    intervals_of: Any,
    name: Any,
    tolerance_s: float,
) -> None:
    """The four tiers of one stream agree with its estimates: one class, arousal and valence
    interval per estimate the model ran on, at the documented times, and merged speech."""
    want = expected_intervals(records)
    ran = [(r, s, e) for r, s, e in want if r["probs"] is not None]
    assert len(ran) > 5
    for kind in ("class", "arousal", "valence"):
        got = intervals_of(name(kind))
        assert len(got) == len(ran), kind
        for (r, start, end), (g_start, g_end, text) in zip(ran, got, strict=True):
            assert g_start == pytest.approx(start, abs=tolerance_s)
            assert g_end == pytest.approx(end, abs=tolerance_s)
            if kind == "class":
                best = int(np.argmax(r["probs"]))
                assert text == f"{CLASS_NAMES[best]} {r['probs'][best]:.2f}"
            elif kind == "arousal":
                assert text == f"{affect_bin(r['arousal'], AROUSAL_RANGE)} {r['arousal']:.2f}"
            else:
                assert text == f"{affect_bin(r['valence'], VALENCE_RANGE)} {r['valence']:+.2f}"
    speech = intervals_of(name("speech"))
    assert [[s, e] for s, e, _ in speech] == [
        [pytest.approx(s, abs=tolerance_s), pytest.approx(e, abs=tolerance_s)]
        for s, e in speech_segments(want)
    ]
    assert {text for _, _, text in speech} <= {"speech"}


def test_elan_file_has_the_tiers_marks_and_linked_recording(
    mono_session: Path, tmp_path: Path
) -> None:
    out = tmp_path / "talk.eaf"
    r = export(mono_session, out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    eaf = pympi.Elan.Eaf(str(out))
    assert list(eaf.get_tier_names()) == [*STREAM_TIERS, "marks"]
    records = logged(mono_session)
    assert {r["stream"] for r in records} == {"main"}

    def intervals_of(name: str) -> list[tuple[float, float, str]]:
        return [(s / 1000, e / 1000, text) for s, e, text in eaf_tier(eaf, name)]

    check_stream_tiers(records, intervals_of, lambda kind: kind, tolerance_s=0.0005)
    marks = eaf_tier(eaf, "marks")
    assert [(s, text) for s, _, text in marks] == [
        (round(MARK_AT_S * 1000), " | ".join(NOTES_AT_MARK)),
        (round(LATER_MARK[0] * 1000), LATER_MARK[1]),
    ]
    assert all(e > s for s, e, _ in marks)
    (media,) = eaf.media_descriptors
    wav = tmp_path / "talk.wav"
    assert media["RELATIVE_MEDIA_URL"] == "./talk.wav"
    assert media["MEDIA_URL"] == wav.resolve().as_uri()
    assert media["MIME_TYPE"] == "audio/x-wav"
    joined, rate = sf.read(wav, dtype="float32", always_2d=True)
    recorded, recorded_rate = read_recording(mono_session)
    assert rate == recorded_rate and joined.shape == recorded.shape
    np.testing.assert_allclose(joined, recorded, atol=1 / 32767)
    assert out.stat().st_mode & 0o077 == 0 and wav.stat().st_mode & 0o077 == 0


def test_textgrid_has_the_tiers_marks_and_names_the_recording(
    mono_session: Path, tmp_path: Path
) -> None:
    out = tmp_path / "talk.TextGrid"
    r = export(mono_session, out)
    assert r.returncode == 0, r.stderr
    tg = textgrid.openTextgrid(str(out), includeEmptyIntervals=False)
    assert tg.tierNames == (*STREAM_TIERS, "marks")
    records = logged(mono_session)

    def intervals_of(name: str) -> list[tuple[float, float, str]]:
        return [(i.start, i.end, i.label) for i in tg.getTier(name).entries]

    check_stream_tiers(records, intervals_of, lambda kind: kind, tolerance_s=1e-9)
    # praatio leaves a point's doubled quotes doubled (Praat itself reads them back as one)
    marks = [(p.time, p.label.replace('""', '"')) for p in tg.getTier("marks").entries]
    assert marks == [(MARK_AT_S, " | ".join(NOTES_AT_MARK)), LATER_MARK]
    recorded, rate = read_recording(mono_session)
    assert tg.maxTimestamp == pytest.approx(len(recorded) / rate)
    assert "! audio: talk.wav beside this file" in out.read_text()
    assert (tmp_path / "talk.wav").is_file()


def test_textgrid_after_elan_links_the_recording_already_there(
    mono_session: Path, tmp_path: Path
) -> None:
    assert export(mono_session, tmp_path / "talk.eaf").returncode == 0
    wav = tmp_path / "talk.wav"
    before = wav.stat().st_mtime_ns, wav.read_bytes()
    r = export(mono_session, tmp_path / "talk.TextGrid")
    assert r.returncode == 0, r.stderr
    assert "already there" in r.stdout
    assert (wav.stat().st_mtime_ns, wav.read_bytes()) == before


def test_csv_rows_equal_the_estimates(mono_session: Path, tmp_path: Path) -> None:
    out = tmp_path / "talk.csv"
    r = export(mono_session, out)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "talk.wav").exists()
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    records = logged(mono_session)
    assert len(rows) == len(records) > 5
    for row, rec in zip(rows, records, strict=True):
        assert row["stream"] == rec["stream"]
        assert (int(row["seq"]), int(row["window"])) == (rec["seq"], rec["window"])
        for key in ("t_start_s", "t_end_s", "arousal", "valence", "speech"):
            assert float(row[key]) == rec[key], key
        best = int(np.argmax(rec["probs"]))
        assert (row["class"], float(row["class_prob"])) == (CLASS_NAMES[best], rec["probs"][best])
        assert row["is_speech"] == str(rec["is_speech"])


def test_each_stream_gets_its_own_tier_set(two_voice_session: Path, tmp_path: Path) -> None:
    records = logged(two_voice_session)
    assert {r["stream"] for r in records} == {"alice", "bob"}
    want_names = [f"{s} {kind}" for s in ("alice", "bob") for kind in STREAM_TIERS]
    r = export(two_voice_session, tmp_path / "two.eaf")
    assert r.returncode == 0, r.stderr
    r = export(two_voice_session, tmp_path / "two.TextGrid")
    assert r.returncode == 0, r.stderr
    eaf = pympi.Elan.Eaf(str(tmp_path / "two.eaf"))
    tg = textgrid.openTextgrid(str(tmp_path / "two.TextGrid"), includeEmptyIntervals=False)
    assert list(eaf.get_tier_names()) == [*want_names, "marks"]
    assert list(tg.tierNames) == [*want_names, "marks"]
    assert eaf.media_descriptors == []  # this run recorded nothing
    for stream in ("alice", "bob"):
        own = [r for r in records if r["stream"] == stream]
        assert eaf.get_parameters_for_tier(f"{stream} class")["PARTICIPANT"] == stream

        def eaf_intervals(name: str) -> list[tuple[float, float, str]]:
            return [(s / 1000, e / 1000, text) for s, e, text in eaf_tier(eaf, name)]

        def tg_intervals(name: str) -> list[tuple[float, float, str]]:
            return [(i.start, i.end, i.label) for i in tg.getTier(name).entries]

        check_stream_tiers(own, eaf_intervals, lambda k, s=stream: f"{s} {k}", 0.0005)
        check_stream_tiers(own, tg_intervals, lambda k, s=stream: f"{s} {k}", 1e-9)
    # bob is silent for the first half, so his speech starts later than alice's
    alice_speech = tg.getTier("alice speech").entries
    bob_speech = tg.getTier("bob speech").entries
    assert bob_speech and alice_speech and bob_speech[0].start > alice_speech[0].start


# ----------------------------------------------------------------------------- a killed run


def estimate(seq: int, t_start_s: float, t_end_s: float, ran: bool, speech: bool) -> Estimate:
    probs = tuple(float(p) for p in np.roll([0.05, 0.1, 0.15, 0.2, 0.1, 0.4], seq))
    a, v = (0.2 + 0.1 * seq, -0.9 + 0.3 * seq) if ran else (None, None)
    return Estimate(
        seq=seq, window=seq, t_start_s=t_start_s, t_end_s=t_end_s,
        wall_time="2026-12-06T10:00:00+00:00", probs=probs if ran else None, arousal=a,
        valence=v, arousal_smooth=a, valence_smooth=v, speech=0.8 if speech else 0.1,
        is_speech=speech, compute_s=0.01, latency_s=0.1, skipped_windows=0, dropped_samples=0,
    )  # fmt: skip


KILLED = [
    estimate(0, 0.0, 1.0, True, False),
    estimate(1, 0.0, 2.0, True, True),
    estimate(2, 0.0, 3.0, True, True),
    estimate(3, 1.0, 4.0, False, False),  # --skip-non-speech: the model did not run
    estimate(4, 3.0, 6.0, True, True),  # after a skipped window: covers 4..6
    estimate(5, 4.0, 7.0, True, True),
]


@pytest.fixture
def killed_session(tmp_path: Path) -> Iterator[Path]:
    """A session as a killed run of an older streamser leaves it: meta.json never closed, no
    ``streams`` in meta.json and no ``stream`` in the estimates, the last line cut short."""
    session = tmp_path / "sessions" / "20261206-100000-abcdef"
    session.mkdir(parents=True)
    meta = {
        "format_version": 1, "session_id": session.name,
        "start_time": "2026-12-06T10:00:00+00:00", "closed": False,
        "model": {"name": "amiriparian/ExHuBERT", "revision": "b158d45"},
    }  # fmt: skip
    (session / "meta.json").write_text(json.dumps(meta))
    lines = []
    for e in KILLED:
        record = e.to_json_dict()
        del record["stream"]
        lines.append(json.dumps(record))
    lines.append('{"seq":6,"window":6,"t_start_s":5.0,"t_e')  # the write the kill cut short
    (session / "estimates.jsonl").write_text("\n".join(lines))
    (session / "marks.jsonl").write_text(json.dumps({"t_s": 2.5, "note": "sigh"}) + "\n")
    yield session


def test_a_killed_session_exports_what_it_logged_and_says_so(
    killed_session: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed.TextGrid"
    r = streamser(
        "export", killed_session.name[:12], "-o", str(out),
        "--log-dir", str(killed_session.parent), env=env_for(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    assert "not closed cleanly" in line and "exported the 6 estimates" in line
    assert "1 cut line" in line
    tg = textgrid.openTextgrid(str(out), includeEmptyIntervals=False)
    assert tg.tierNames == (*STREAM_TIERS, "marks")  # the one stream "main": no prefix
    spans = [(i.start, i.end) for i in tg.getTier("class").entries]
    # each estimate covers the time since the previous window end; the skipped one has no class
    assert spans == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (4.0, 6.0), (6.0, 7.0)]
    assert [(i.start, i.end) for i in tg.getTier("speech").entries] == [(1.0, 3.0), (4.0, 7.0)]
    assert [(p.time, p.label) for p in tg.getTier("marks").entries] == [(2.5, "sigh")]
    text = out.read_text()
    assert "! audio: this session recorded none" in text
    assert "not closed cleanly" in text

    eaf_out = tmp_path / "killed.eaf"
    r = export(killed_session, eaf_out)
    assert r.returncode == 0, r.stderr
    eaf = pympi.Elan.Eaf(str(eaf_out))
    assert [(s, e) for s, e, _ in eaf_tier(eaf, "arousal")] == [
        (0, 1000), (1000, 2000), (2000, 3000), (4000, 6000), (6000, 7000)
    ]  # fmt: skip
    assert eaf.media_descriptors == []


def test_recording_gaps_stay_in_place_as_silence(killed_session: Path, tmp_path: Path) -> None:
    """Recorded in two runs with a gap between them: the exported WAV keeps each part at its
    stream time, so the annotations stay on the audio they describe."""
    rate = 8_000
    recorder = AudioRecorder(killed_session, rate, 2)
    t = np.arange(rate // 2) / rate
    first = np.stack([0.5 * np.sin(2 * np.pi * 220 * t), 0.25 * np.sin(2 * np.pi * 330 * t)], 1)
    second = first[::-1].copy()
    recorder.start(0)
    recorder.write(0, first.astype(np.float32))
    recorder.write(2 * rate, second.astype(np.float32))  # a gap: the next segment starts at 2 s
    recorder.stop()
    out = tmp_path / "gap.eaf"
    r = export(killed_session, out)
    assert r.returncode == 0, r.stderr
    joined, joined_rate = sf.read(tmp_path / "gap.wav", dtype="float32", always_2d=True)
    assert joined_rate == rate and joined.shape == (2 * rate + len(second), 2)
    np.testing.assert_allclose(joined[: len(first)], first, atol=1 / 32767)
    assert not joined[len(first) : 2 * rate].any()
    np.testing.assert_allclose(joined[2 * rate :], second, atol=1 / 32767)
    (media,) = pympi.Elan.Eaf(str(out)).media_descriptors
    assert media["RELATIVE_MEDIA_URL"] == "./gap.wav"


# ----------------------------------------------------------------------------- mistakes


def one_line_error(r: Any) -> str:
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith("streamser: error: ") and "Traceback" not in r.stderr
    return line


def test_mistakes_are_one_line_and_overwrite_nothing(killed_session: Path, tmp_path: Path) -> None:
    log_dir = ["--log-dir", str(killed_session.parent)]
    env = env_for(tmp_path)
    line = one_line_error(
        streamser("export", "nosuch", "-o", str(tmp_path / "x.eaf"), *log_dir, env=env)
    )
    assert "no session 'nosuch'" in line
    line = one_line_error(export(killed_session, tmp_path / "missing" / "x.eaf"))
    assert "does not exist" in line
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    line = one_line_error(export(killed_session, a_file / "x.eaf"))
    assert "not a directory" in line
    line = one_line_error(export(killed_session, tmp_path / "x.txt"))
    assert "--format" in line
    annotated = tmp_path / "annotated.eaf"
    annotated.write_text("hours of hand annotation")
    line = one_line_error(export(killed_session, annotated))
    assert "--force" in line and annotated.read_text() == "hours of hand annotation"
    assert export(killed_session, annotated, "--force").returncode == 0
    assert pympi.Elan.Eaf(str(annotated)).get_tier_names()
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- the rules


def test_overlapping_windows_become_the_hop_before_each_window_end() -> None:
    """--full-windows-only, hop 0.5 s: the first window covers 0..3, each later one the half
    second before its end; a repeated window end covers nothing."""
    windows = [(0.0, 3.0), (0.5, 3.5), (1.0, 4.0), (1.0, 4.0), (1.5, 4.5)]
    ests = [estimate(i, s, e, True, True) for i, (s, e) in enumerate(windows)]
    got = [(e.seq, s, t) for e, s, t in hop_intervals(reversed(ests))]
    assert got == [(0, 0.0, 3.0), (1, 3.0, 3.5), (2, 3.5, 4.0), (4, 4.0, 4.5)]


@pytest.mark.parametrize(("value_range"), [AROUSAL_RANGE, VALENCE_RANGE])
def test_bins_are_thirds_of_the_range(value_range: tuple[float, float]) -> None:
    low, high = value_range
    third = (high - low) / 3
    assert affect_bin(low, value_range) == BIN_NAMES[0]
    assert affect_bin(low + third * 0.99, value_range) == BIN_NAMES[0]
    assert affect_bin(low + third * 1.01, value_range) == BIN_NAMES[1]
    assert affect_bin(high - third * 1.01, value_range) == BIN_NAMES[1]
    assert affect_bin(high - third * 0.99, value_range) == BIN_NAMES[2]
    assert affect_bin(high, value_range) == BIN_NAMES[2]
