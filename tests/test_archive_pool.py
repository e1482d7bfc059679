"""``streamser analyze`` with decoding in worker processes: the same rows as the in-process
analysis and as ``listen --fast``, a corrupt file reported and skipped, memory flat over a
long archive, ``--per-channel`` streams equal to their channels analysed alone, and resuming
over rows written before streams existed or left half-written by a killed run.

Everything runs in-process (``main``) with the tiny fixture model; the worker processes are
real ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.archive_corpus import (
    FILES,
    SPEECH,
    TINY_MODEL,
    assert_same_windows,
    make_archive,
    windows_by_key,
)
from tests.test_reliability_inputs import Run, run_in_process
from tests.test_sessions_cli import read_any


@pytest.fixture(autouse=True)
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def analyze(*args: str, model: str = TINY_MODEL) -> Run:
    return run_in_process("analyze", *args, "--model", model)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    root = tmp_path_factory.mktemp("archive")
    files, corrupt = make_archive(root)
    return root, files, corrupt


@pytest.fixture(scope="module")
def runs(
    archive: tuple[Path, list[Path], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Run, list[dict[str, Any]], dict[str, Any]]]:
    """The archive analysed in this process (``--workers 0``) and in a pool of two workers."""
    root = archive[0]
    env = pytest.MonkeyPatch()
    work = tmp_path_factory.mktemp("runs")
    env.setenv("STREAMSER_CONFIG", str(work / "no-config.toml"))
    env.setenv("STREAMSER_CACHE_DIR", str(work / "cache"))
    done = {}
    try:
        for name, workers in (("in-process", "0"), ("pool", "2")):
            out = work / f"{name}.jsonl"
            r = analyze(str(root), "-o", str(out), "--workers", workers)
            meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
            done[name] = (r, read_any(out), meta)
    finally:
        env.undo()
    return done


def test_the_pool_gives_the_in_process_rows(runs: dict[str, Any]) -> None:
    (r0, rows0, _), (r1, rows1, _) = runs["in-process"], runs["pool"]
    assert r0.returncode == 0 and r1.returncode == 0, r1.stderr
    assert len(windows_by_key(rows1)) > 2 * FILES
    assert_same_windows(rows1, rows0)
    # the same rows in the same order: files as given, each file's windows in order
    assert [(r["type"], r["file"], r.get("window")) for r in rows1] == [
        (r["type"], r["file"], r.get("window")) for r in rows0
    ]
    for a, b in zip(rows1, rows0):
        if a["type"] == "window":
            assert a["seq"] == b["seq"] and a["stream"] == "main"
            for k in ("arousal_smooth", "valence_smooth"):
                assert (a[k] is None) == (b[k] is None)
                assert a[k] is None or abs(a[k] - b[k]) <= 1e-5


def test_a_corrupt_file_is_reported_and_the_rest_complete(
    runs: dict[str, Any], archive: tuple[Path, list[Path], Path]
) -> None:
    _, files, corrupt = archive
    r, rows, meta = runs["pool"]
    summaries = [row for row in rows if row["type"] == "summary"]
    assert sorted(s["file"] for s in summaries) == sorted(str(f) for f in files)
    assert f"skipped {corrupt}" in r.stderr and "1 unreadable file(s) skipped" in r.stderr
    status = {i["file"]: i for i in meta["inputs"]}
    assert status[str(corrupt)]["status"] == "skipped" and status[str(corrupt)]["reason"]
    assert all(status[str(f)]["status"] == "done" for f in files)
    assert meta["batch"] == 8  # sized for the CPU: --batch was not given


def test_the_pool_gives_what_listen_fast_gives(
    runs: dict[str, Any], archive: tuple[Path, list[Path], Path]
) -> None:
    _, files, _ = archive
    stereo = next(f for f in files if sf.info(str(f)).channels == 2)
    live = run_in_process(
        "listen", "--input", str(stereo), "--fast", "--headless", "--no-log",
        "--model", TINY_MODEL,
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    _, rows, _ = runs["pool"]
    mine = [r for r in rows if r["file"] == str(stereo)]
    assert_same_windows(mine, [{"file": str(stereo), **e} for e in live.rows()])


# ----------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRss:
    """The process's peak resident memory while the block runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_bytes())
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


@pytest.fixture
def in_flight(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The most files ever submitted to the workers and not yet handed back, per run."""
    import streamser.session.archive_pool as pool

    most: list[int] = []
    state = {"now": 0}
    real_submit, real_analyze = pool._Pool.submit, pool.analyze_in_pool

    def submit(self: Any, path: str) -> Any:
        state["now"] += 1
        most[-1] = max(most[-1], state["now"])
        return real_submit(self, path)

    def analyze_in_pool(*args: Any) -> None:
        executor, cfg, settings, todo, done, skip, say = args

        def handed_back(*args: Any) -> None:
            state["now"] -= 1
            done(*args)

        def skipped(*args: Any) -> None:
            state["now"] -= 1
            skip(*args)

        most.append(0)
        real_analyze(executor, cfg, settings, todo, handed_back, skipped, say)

    monkeypatch.setattr(pool._Pool, "submit", submit)
    monkeypatch.setattr(pool, "analyze_in_pool", analyze_in_pool)
    import streamser.session.analysis as analysis

    monkeypatch.setattr(analysis, "analyze_in_pool", analyze_in_pool)
    yield most


def test_memory_stays_flat_over_a_long_archive(tmp_path: Path, in_flight: list[int]) -> None:
    """160 files of 4 s at 22 kHz. The peak memory of 20 files and of 160 differ by less than a
    generous 60 MB, and never more than two files per worker are in flight (the sharp check:
    each file in flight holds its decoded signal)."""
    x, rate = sf.read(SPEECH, dtype="float32")
    rng = np.random.default_rng(3)
    clip = x[: 4 * rate]
    for k in range(160):
        noisy = clip + 0.01 * rng.standard_normal(len(clip)).astype(np.float32)
        folder = tmp_path / ("small" if k < 20 else "large")
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"f{k:03d}.wav", noisy, rate, subtype="FLOAT")
    import shutil

    for f in sorted((tmp_path / "small").iterdir()):  # the large archive holds the small one
        shutil.copy(f, tmp_path / "large" / f.name)
    args = ("--workers", "2", "--no-vad", "--hop", "3")
    assert (
        analyze(str(tmp_path / "small"), "-o", str(tmp_path / "warm.jsonl"), *args).returncode == 0
    )
    peaks = {}
    for name in ("small", "large"):
        with PeakRss() as rss:
            r = analyze(str(tmp_path / name), "-o", str(tmp_path / f"{name}.jsonl"), *args)
        assert r.returncode == 0, r.stderr
        peaks[name] = rss.peak
    rows = read_any(tmp_path / "large.jsonl")
    assert sum(1 for r in rows if r["type"] == "summary") == 160, r.stderr[-3000:]
    growth_mb = (peaks["large"] - peaks["small"]) / 2**20
    assert growth_mb < 60, f"peak RSS grew by {growth_mb:.0f} MB from 20 to 160 files"
    assert max(in_flight) <= 4, in_flight  # two workers, two files each


# ----------------------------------------------------------------------------- per channel


def test_each_channel_is_its_own_stream_equal_to_that_channel_alone(tmp_path: Path) -> None:
    x, rate = sf.read(SPEECH, dtype="float32")
    left = x[: 6 * rate]
    right = 0.3 * x[4 * rate : 10 * rate]  # another part of the clip, quieter
    both = tmp_path / "both" / "pair.flac"
    both.parent.mkdir()
    sf.write(both, np.stack([left, right], axis=1), rate)
    stereo, _ = sf.read(both, dtype="float32")
    for k, name in enumerate(("left", "right")):  # each channel as a mono file, same samples
        sf.write(tmp_path / f"{name}.wav", stereo[:, k], rate, subtype="FLOAT")
    sf.write(both.with_name("second.wav"), stereo[::-1], rate)  # so that the pool runs

    out = tmp_path / "pair.jsonl"
    r = analyze(str(both.parent), "-o", str(out), "--per-channel", "--stream-names", "alice,bob")
    assert r.returncode == 0, r.stderr
    rows = [row for row in read_any(out) if row["file"] == str(both)]
    assert {r["stream"] for r in rows} == {"alice", "bob"}
    assert [(s["stream"], s["type"]) for s in rows if s["type"] == "summary"] == [
        ("alice", "summary"),
        ("bob", "summary"),
    ]
    for stream, name in (("alice", "left"), ("bob", "right")):
        alone = tmp_path / f"{name}.jsonl"
        assert analyze(str(tmp_path / f"{name}.wav"), "-o", str(alone)).returncode == 0
        mine = [{**r, "file": name, "stream": "main"} for r in rows if r["stream"] == stream]
        theirs = [{**r, "file": name} for r in read_any(alone)]
        assert_same_windows(mine, theirs)
        assert [r["arousal_smooth"] for r in mine if r["type"] == "window"] == pytest.approx(
            [r["arousal_smooth"] for r in theirs if r["type"] == "window"], abs=1e-5
        )

    # the in-process path agrees, and --streams picks one channel
    one = tmp_path / "one.jsonl"
    r = analyze(
        str(both.parent), "-o", str(one), "--per-channel", "--streams", "2", "--workers", "0"
    )
    assert r.returncode == 0, r.stderr
    picked = [row for row in read_any(one) if row["file"] == str(both)]
    assert {row["stream"] for row in picked} == {"ch2"}
    assert_same_windows(
        [{**row, "stream": "bob"} for row in picked],
        [row for row in rows if row["stream"] == "bob"],
    )


def test_a_channel_the_file_lacks_skips_that_file_saying_so(tmp_path: Path) -> None:
    mono = tmp_path / "mono.wav"
    sf.write(mono, np.zeros(16_000, dtype=np.float32), 16_000)
    r = analyze(str(mono), "-o", str(tmp_path / "x.jsonl"), "--per-channel", "--streams", "2")
    assert r.returncode == 2
    assert "the input has 1 channel(s)" in r.stderr.splitlines()[-1]


# ----------------------------------------------------------------------------- resuming


def test_rows_written_before_streams_existed_still_resume_and_read(tmp_path: Path) -> None:
    x, rate = sf.read(SPEECH, dtype="float32")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, x[: 2 * rate], rate)
    sf.write(b, x[2 * rate : 5 * rate], rate)
    out = tmp_path / "out.parquet"
    old = tmp_path / "old.jsonl"
    assert analyze(str(a), "-o", str(old)).returncode == 0
    progress = tmp_path / ".out.parquet.progress.jsonl"  # as an older version left it, killed
    legacy = [{k: v for k, v in row.items() if k != "stream"} for row in read_any(old)]
    progress.write_text("".join(json.dumps(row) + "\n" for row in legacy))
    r = analyze(str(a), str(b), "-o", str(out))
    assert r.returncode == 0 and "1 file(s) already done" in r.stderr, r.stderr
    rows = read_any(out)
    assert {row["stream"] for row in rows} == {"main"}
    assert sorted(row["file"] for row in rows if row["type"] == "summary") == [str(a), str(b)]
    assert len(windows_by_key(rows)) == len([row for row in rows if row["type"] == "window"])


def test_a_file_left_half_written_is_redone_once(tmp_path: Path) -> None:
    x, rate = sf.read(SPEECH, dtype="float32")
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, x[: 2 * rate], rate)
    sf.write(b, x[2 * rate : 5 * rate], rate)
    full = tmp_path / "full.jsonl"
    assert analyze(str(a), str(b), "-o", str(full)).returncode == 0
    lines = full.read_text().splitlines(keepends=True)
    n_a = sum(1 for row in read_any(full) if row["file"] == str(a))
    out = tmp_path / "out.jsonl"  # a done, b's first window and half of its second written
    out.write_text("".join(lines[: n_a + 1]) + lines[n_a + 1][:30])
    r = analyze(str(a), str(b), "-o", str(out))
    assert r.returncode == 0 and "half-written" in r.stderr, r.stderr
    got, want = read_any(out), read_any(full)
    assert [(w["file"], w.get("window")) for w in got] == [
        (w["file"], w.get("window")) for w in want
    ]
    assert_same_windows(got, want)


def test_the_progress_counts_hours_of_audio() -> None:
    from streamser.session.archive_progress import ArchiveProgress

    with ArchiveProgress(total_s=7200.0, files=3) as bar:
        assert bar.hours_per_hour is None
        bar.advance(1800.0)
        text = bar._postfix()
        assert text.startswith("0.50/2.00 h of audio, ") and text.endswith(" h/h"), text
        rate = bar.hours_per_hour
        assert rate is not None and rate > 1800.0 / 3600.0  # half an hour in under an hour
