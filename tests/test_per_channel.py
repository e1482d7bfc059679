"""Many voices at once: ``--per-channel`` makes each input channel its own stream, all streams
batched through one model.

A two-channel file with speech on one channel and faint noise on the other must give each
stream the window formula's count, its own speech gate, and exactly the probabilities of that
channel analysed alone; four live streams with a model slower than the hop must keep latency
bounded, count every stream's skips, and run one forward pass per round.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DATA_DIR, ROOT_DIR

from streamser.audio.replay import ArraySource
from streamser.config import ConfigError, ListenConfig, LogConfig, StreamConfig, WindowConfig
from streamser.constants import NUM_CLASSES, SAMPLE_RATE_HZ
from streamser.contracts import ComputeInfo, Estimate, ModelInfo, StreamSpec
from streamser.engine.pipeline import Pipeline

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")
NOISE_RMS = 0.003


def run_listen(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamser", "listen", "--fast", "--headless", "--model", TINY,
         *args],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "STREAMSER_CONFIG": str(tmp_path / "absent.toml"),
             "STREAMSER_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip


def window_count(frames: int, rate_hz: int, first_s: float = 1.0, hop_s: float = 1.0) -> int:
    n16 = round(frames * SAMPLE_RATE_HZ / rate_hz)
    first, hop = round(first_s * SAMPLE_RATE_HZ), round(hop_s * SAMPLE_RATE_HZ)
    return (n16 - first) // hop + 1


@pytest.fixture(scope="module")
def two_channel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """speech.wav on channel 1, faint noise on channel 2, and each channel as a mono file."""
    d = tmp_path_factory.mktemp("two")
    speech, rate_hz = sf.read(SPEECH, dtype="float32")
    noise = np.random.default_rng(7).normal(0.0, NOISE_RMS, len(speech)).astype(np.float32)
    paths = {"both": d / "both.wav", "ch1": d / "ch1.wav", "ch2": d / "ch2.wav"}
    sf.write(paths["both"], np.stack([speech, noise], axis=1), rate_hz, subtype="FLOAT")
    sf.write(paths["ch1"], speech, rate_hz, subtype="FLOAT")
    sf.write(paths["ch2"], noise, rate_hz, subtype="FLOAT")
    return paths


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_each_channel_is_its_own_stream_equal_to_the_channel_alone(
    two_channel: dict[str, Path], tmp_path: Path
) -> None:
    both = run_listen(
        "--input", str(two_channel["both"]), "--per-channel", "--stream-names", "alice,bob",
        "--log-dir", str(tmp_path / "sessions"), tmp_path=tmp_path,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    rows = lines(both.stdout)
    info = sf.info(str(two_channel["both"]))
    want = window_count(info.frames, info.samplerate)
    by_stream = {name: [r for r in rows if r["stream"] == name] for name in ("alice", "bob")}
    assert {r["stream"] for r in rows} == {"alice", "bob"}
    assert [len(v) for v in by_stream.values()] == [want, want]
    assert [r["seq"] for r in rows] == list(range(len(rows)))  # one sequence for the run
    assert [r["window"] for r in by_stream["bob"]] == list(range(want))

    alice_speech = [r["speech"] for r in by_stream["alice"]]
    bob_speech = [r["speech"] for r in by_stream["bob"]]
    assert np.mean(alice_speech) > 0.5, alice_speech
    assert max(bob_speech) < 0.05, bob_speech

    for name, channel in (("alice", "ch1"), ("bob", "ch2")):
        alone = run_listen("--input", str(two_channel[channel]), "--no-log", tmp_path=tmp_path)
        assert alone.returncode == 0, alone.stderr
        mono = lines(alone.stdout)
        assert all(r["stream"] == "main" for r in mono)
        assert len(mono) == len(by_stream[name])
        for a, b in zip(by_stream[name], mono):
            assert (a["t_start_s"], a["t_end_s"], a["is_speech"]) == (
                b["t_start_s"],
                b["t_end_s"],
                b["is_speech"],
            )
            assert a["speech"] == pytest.approx(b["speech"], abs=1e-9)
            np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
            for key in ("arousal_smooth", "valence_smooth"):
                assert (a[key] is None) == (b[key] is None)

    (session,) = (tmp_path / "sessions").iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["schema_version"] == 3
    assert meta["streams"] == [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]
    per_stream = {s["name"]: s for s in meta["counters"]["streams"]}
    for name in ("alice", "bob"):
        assert per_stream[name]["estimates"] == per_stream[name]["windows_due"] == want
        assert per_stream[name]["skipped_windows"] == 0
    logged = lines((session / "estimates.jsonl").read_text())
    assert [r["stream"] for r in logged] == [r["stream"] for r in rows]


def test_chosen_channels_and_bad_choices(two_channel: dict[str, Path], tmp_path: Path) -> None:
    only_two = run_listen(
        "--input", str(two_channel["both"]), "--per-channel", "--streams", "2", "--no-log",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert only_two.returncode == 0, only_two.stderr
    assert {r["stream"] for r in lines(only_two.stdout)} == {"ch2"}

    too_many = run_listen(
        "--input", str(two_channel["both"]), "--per-channel", "--streams", "1,3", "--no-log",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert too_many.returncode == 2
    assert too_many.stderr.strip().splitlines() == [
        "streamser: error: --streams 1,3: the input has 2 channel(s); choose channels 1 to 2"
    ]
    assert too_many.stdout == ""


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (StreamConfig(channels="1"), "--streams needs --per-channel"),
        (StreamConfig(per_channel=True, channels="0,2"), "distinct channel numbers"),
        (StreamConfig(per_channel=True, channels="1,1"), "distinct channel numbers"),
        (StreamConfig(per_channel=True, channels="a"), "channel numbers counted from 1"),
        (StreamConfig(per_channel=True, names="a b,c"), "no spaces"),
        (StreamConfig(per_channel=True, names="a,a"), "the names must differ"),
        (StreamConfig(per_channel=True, channels="1,2", names="a"), "one name per stream"),
    ],
)
def test_stream_settings_are_checked(cfg: StreamConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_streams_resolve_against_the_input() -> None:
    assert StreamConfig().resolve(4) == (StreamSpec("main", None),)
    assert StreamConfig(per_channel=True).resolve(2) == (
        StreamSpec("ch1", 0),
        StreamSpec("ch2", 1),
    )
    chosen = StreamConfig(per_channel=True, channels="3,1", names="bob,alice").resolve(4)
    assert chosen == (StreamSpec("bob", 2), StreamSpec("alice", 0))
    with pytest.raises(ConfigError, match="one name per channel"):
        StreamConfig(per_channel=True, names="a,b,c").resolve(2)


def test_logs_without_streams_read_as_the_main_stream() -> None:
    old = {"seq": 3, "t_start_s": 0.0, "t_end_s": 1.0, "wall_time": "x", "probs": None}
    assert Estimate.from_json_dict(old).stream == "main"


class CountingSlowModel:
    """A stand-in slower than the hop that records the batch size of every forward pass."""

    info = ModelInfo.random_weights("slow stand-in", "not applicable", 0)

    def __init__(self, compute_s: float) -> None:
        self.compute_s = compute_s
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        with self._lock:
            self.batches.append(len(inputs))
        time.sleep(self.compute_s)  # simulated compute time, not synchronisation
        return np.zeros((len(inputs), NUM_CLASSES), dtype=np.float32)

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(device="cpu", dtype="float32", backend="none", fallbacks=0)


def test_four_live_streams_share_one_batched_model_and_stay_bounded() -> None:
    hop_s, compute_s, duration_s, n_streams = 0.25, 0.6, 20.0, 4
    t = np.arange(int(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    x = np.stack(
        [(0.1 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220, 330, 440, 550)],
        axis=1,
    )
    cfg = ListenConfig(
        windows=WindowConfig(hop_s=hop_s, vad=False),
        logging=LogConfig(log=False),
        streams=StreamConfig(per_channel=True),
    )
    model = CountingSlowModel(compute_s)
    pipeline = Pipeline(cfg, model, ArraySource(x, SAMPLE_RATE_HZ, realtime=True))
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("test", got.append)
    with pipeline:
        assert pipeline.wait(duration_s + 30)

    names = [f"ch{i}" for i in range(1, n_streams + 1)]
    assert [s.name for s in pipeline.streams] == names
    due = (len(x) - SAMPLE_RATE_HZ) // round(hop_s * SAMPLE_RATE_HZ) + 1
    counters = pipeline.counters()
    per_stream = {s["name"]: s for s in counters["streams"]}
    for name in names:
        mine = [e for e in got if e.stream == name]
        assert len(mine) > 5
        s = per_stream[name]
        assert s["windows_due"] == due
        assert s["estimates"] + s["skipped_windows"] == due
        assert s["estimates"] == len(mine)
        assert s["skipped_windows"] > 0  # the model is slower than the hop: newest wins
        assert mine[-1].skipped_windows == s["skipped_windows"]
    assert counters["skipped_windows"] == sum(s["skipped_windows"] for s in per_stream.values())
    lat = np.array([e.latency_s for e in got])
    assert lat.max() < compute_s + hop_s + 1.0, lat.max()  # a round, a hop, and a margin
    third = len(lat) // 3
    assert lat[-third:].mean() < lat[:third].mean() + 0.2  # no growth
    # One forward pass per round: every stream's newest window in the same batch.
    assert model.batches == [n_streams] * len(model.batches), model.batches
    assert len(model.batches) == pipeline.worker.model_calls == len(got) // n_streams
    status = pipeline.status()
    assert [s.name for s in status.streams] == names
    assert [s.estimates for s in status.streams] == [per_stream[n]["estimates"] for n in names]


def test_analyze_of_a_per_channel_session_reproduces_every_stream(
    two_channel: dict[str, Path], tmp_path: Path
) -> None:
    log_dir = tmp_path / "sessions"
    live = run_listen(
        "--input", str(two_channel["both"]), "--per-channel", "--stream-names", "alice,bob",
        "--record", "--log-dir", str(log_dir), tmp_path=tmp_path,
    )  # fmt: skip
    assert live.returncode == 0, live.stderr
    (session,) = log_dir.iterdir()
    out = tmp_path / "again.jsonl"
    again = subprocess.run(
        [sys.executable, "-m", "streamser", "analyze", str(session), "-o", str(out),
         "--model", TINY],
        capture_output=True, text=True, cwd=ROOT_DIR, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "STREAMSER_CONFIG": str(tmp_path / "absent.toml"),
             "STREAMSER_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    rows = [r for r in lines(out.read_text()) if r["type"] == "window"]
    logged = lines((session / "estimates.jsonl").read_text())
    key = lambda r: (r["stream"], r["window"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, logged))
    offline = {key(r): r for r in rows}
    for a in logged:
        b = offline[key(a)]
        assert (a["t_end_s"], a["is_speech"]) == (b["t_end_s"], b["is_speech"])
        assert a["speech"] == pytest.approx(b["speech"], abs=1e-9)
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
