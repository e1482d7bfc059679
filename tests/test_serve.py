"""``streamser serve``: real servers on a free loopback port, real WebSocket clients.

Eight file-mode clients at once get every window, in order, equal to a local ``--fast`` run of
the same file, and the shared executor batched their windows; live clients against a model
slower than the hop get bounded latency, counted skips and one ``busy``; nothing computed is
lost, not even at a graceful shutdown.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DATA_DIR, ROOT_DIR
from serve_clients import (
    estimates,
    health,
    metrics,
    open_stream,
    read_all,
    send_blocks,
    stream_file,
    wait_until,
)
from test_per_channel import CountingSlowModel, window_count

from streamser.audio.replay import FileSource
from streamser.config import ListenConfig, LogConfig
from streamser.contracts import Estimate
from streamser.engine.pipeline import Pipeline
from streamser.model.runtime import load_model
from streamser.resampling import resample_whole
from streamser.server.config import ServeConfig
from streamser.server.server import BackgroundServer
from tests.model_standins import EchoModel

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")


@pytest.fixture(scope="module")
def tiny_model():  # type: ignore[no-untyped-def]
    model = load_model(TINY, "cpu")
    model.warm_up()
    return model


def eight_files(d: Path) -> list[Path]:
    """Cuts of speech.wav: different starts, lengths (3.2-5.6 s), rates and channel counts."""
    speech, rate = sf.read(SPEECH, dtype="float32")
    out = []
    for i, (target_hz, channels) in enumerate(
        [(16000, 1), (22050, 1), (44100, 2), (48000, 1), (8000, 1), (16000, 2), (32000, 1),
         (22050, 2)]
    ):  # fmt: skip
        start = round(i * 0.9 * rate)
        cut = speech[start : start + round((3.2 + 0.3 * i) * rate)]
        x = resample_whole(cut, rate, target_hz) if target_hz != rate else cut
        if channels == 2:
            x = np.stack([x, 0.5 * x[::-1]], axis=1)
        path = d / f"clip{i}.wav"
        sf.write(path, x, target_hz, subtype="FLOAT")
        out.append(path)
    return out


def local_fast(path: Path, model: object) -> list[Estimate]:
    """What ``listen --input F --fast --headless`` computes: the same Pipeline, in-process."""
    cfg = ListenConfig(logging=LogConfig(log=False), headless=True)
    pipeline = Pipeline(cfg, model, FileSource(path, realtime=False))
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("test", got.append)
    with pipeline:
        assert pipeline.wait(120)
    return got


def test_eight_file_clients_get_every_window_equal_to_local_fast_runs(
    tmp_path: Path, tiny_model: object
) -> None:
    files = eight_files(tmp_path)
    want = {p: local_fast(p, tiny_model) for p in files}
    cfg = ServeConfig(port=0, max_streams=8, max_batch=8)
    with BackgroundServer(cfg, tiny_model) as bg:

        def run(path: Path) -> tuple[list[dict], int]:
            audio, rate = sf.read(path, dtype="float32")
            return stream_file(bg.url, audio, rate)

        with ThreadPoolExecutor(len(files)) as pool:
            results = list(pool.map(run, files))
        m = metrics(bg.url)
        stats = bg.server.executor.stats()

    for path, (messages, code) in zip(files, results):
        info = sf.info(str(path))
        n = window_count(info.frames, info.samplerate)
        got = estimates(messages)
        assert len(got) == n == len(want[path]), path
        assert [e["window"] for e in got] == list(range(n))
        assert [e["seq"] for e in got] == list(range(n))
        for e, w in zip(got, want[path]):
            assert (e["t_start_s"], e["t_end_s"], e["is_speech"]) == (
                w.t_start_s,
                w.t_end_s,
                w.is_speech,
            )
            np.testing.assert_allclose(e["probs"], w.probs, atol=1e-5)
            assert e["speech"] == pytest.approx(w.speech, abs=1e-9)
            assert e["skipped_windows"] == 0 and e["stream"] == "main"
        assert messages[0]["type"] == "ready" and messages[0]["mode"] == "file"
        assert messages[-1] == {"type": "end", "estimates": n}
        assert code == 1000
    total = sum(len(estimates(msgs)) for msgs, _ in results)
    assert stats.windows_run == total
    # The executor batched windows of different clients: some forward passes ran several.
    assert max(stats.batch_sizes) > 1, stats.batch_sizes
    assert m["streamser_batch_size_count"] == stats.batches_run
    assert m['streamser_batch_size_bucket{le="1"}'] < m["streamser_batch_size_count"]
    assert m["streamser_windows_total"] == total
    assert m["streamser_streams_connected"] == 0


def test_live_clients_with_a_slow_model_stay_bounded_and_count_skips() -> None:
    hop_s, compute_s, duration_s, rate = 0.25, 0.5, 8.0, 16000
    model = CountingSlowModel(compute_s)
    t = np.arange(int(duration_s * rate)) / rate
    results: dict[int, tuple[list[dict], list[float], list[float]]] = {}
    with BackgroundServer(ServeConfig(port=0), model) as bg:

        def run(i: int) -> None:
            x = (0.1 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32)
            ws, ready = open_stream(bg.url, mode="live", hop_s=hop_s, vad=False, name=f"client{i}")
            assert ready["type"] == "ready" and ready["mode"] == "live"
            sent_at: list[float] = []
            received: list[tuple[float, dict]] = []

            def read() -> None:
                at: list[float] = []
                msgs, _ = read_all(ws, arrivals=at)
                received.extend(zip(at, msgs))

            reader = threading.Thread(target=read)
            reader.start()
            send_blocks(ws, x, rate, block_s=0.05, realtime=True, sent_at=sent_at)
            ws.send(json.dumps({"type": "end"}))
            reader.join(30)
            arrivals = [at for at, m in received if m["type"] == "estimate"]
            results[i] = ([m for _, m in received], sent_at, arrivals)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        stats = bg.server.executor.stats()
        m = metrics(bg.url)

    due = window_count(int(duration_s * rate), rate, hop_s=hop_s)
    total = 0
    for i, (messages, sent_at, arrivals) in results.items():
        got = estimates(messages)
        total += len(got)
        assert {e["stream"] for e in got} == {f"client{i}"}
        assert 5 < len(got) < due
        assert got[-1]["skipped_windows"] > 0  # the model is slower than the hop
        assert len(got) + got[-1]["skipped_windows"] == due
        busy = [msg for msg in messages if msg["type"] == "busy"]
        assert busy and busy[0]["reason"] == "behind"
        assert len(busy) < got[-1]["skipped_windows"] / 4  # said when it starts, not per window
        status = [msg for msg in messages if msg["type"] == "status"]
        assert status and status[-1]["skipped_windows"] > 0
        # Latency seen by the client: from sending the window's last sample to its estimate.
        block = round(0.05 * rate)
        latency = [
            arrivals[k] - sent_at[min(len(sent_at) - 1, round(e["t_end_s"] * rate) // block - 1)]
            for k, e in enumerate(got)
            if e["t_end_s"] <= duration_s
        ]
        assert max(latency) < 2 * compute_s + hop_s + 1.0, latency
        third = max(1, len(latency) // 3)
        assert np.mean(latency[-third:]) < np.mean(latency[:third]) + 0.5, latency
        assert messages[-1]["type"] == "end"
    # Nothing computed was lost: every window the model ran reached its client.
    assert stats.windows_run == total == m["streamser_windows_total"]
    assert m["streamser_windows_skipped_total"] > 0


def test_graceful_shutdown_delivers_what_was_submitted_then_says_closing() -> None:
    gate = threading.Event()
    model = EchoModel(gate=gate)
    bg = BackgroundServer(ServeConfig(port=0), model).start()
    ws, ready = open_stream(bg.url, vad=False)
    assert ready["type"] == "ready"
    send_blocks(ws, np.full(int(4.5 * 16000), 0.01, dtype=np.float32), 16000)
    wait_until(lambda: bg.server.executor.stats().submitted == 4, what="4 windows submitted")
    assert model.entered.wait(10)  # the first batch is at the model, held by the gate
    stopper = threading.Thread(target=bg.stop)
    stopper.start()
    wait_until(lambda: bg.server.stopping.is_set(), what="shutdown to begin")
    gate.set()
    messages, code = read_all(ws)
    stopper.join(60)
    got = estimates(messages)
    assert [e["window"] for e in got] == [0, 1, 2, 3]
    assert messages[-1] == {"type": "closing", "reason": "shutdown"}
    assert code == 1001
    stats = bg.server.executor.stats()
    assert stats.windows_run == 4 and stats.cancelled == 0


def test_admission_refuses_past_max_streams_with_busy() -> None:
    from serve_clients import FastModel

    with BackgroundServer(ServeConfig(port=0, max_streams=2), FastModel()) as bg:
        first, ready = open_stream(bg.url, per_channel=True, channels=2)
        assert ready["type"] == "ready"
        assert [s["name"] for s in ready["streams"]] == ["ch1", "ch2"]
        assert health(bg.url)["streams"] == 2
        refused, answer = open_stream(bg.url)
        assert answer["type"] == "busy" and answer["reason"] == "max_streams"
        _, code = read_all(refused)
        assert code == 1013
        first.close()
        wait_until(lambda: health(bg.url)["streams"] == 0, what="the stream to be released")
        again, ready = open_stream(bg.url)
        assert ready["type"] == "ready"
        again.close()
        assert metrics(bg.url)["streamser_streams_refused_total"] == 1
