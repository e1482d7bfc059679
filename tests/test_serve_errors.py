"""``streamser serve`` under bad input: every mistake gets a typed error and a fitting close,
and the server goes on serving another client meanwhile; clients that vanish or stop reading
leave nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT_DIR
from serve_clients import (
    TOKEN,
    FastModel,
    LiveClient,
    connected,
    health,
    metrics,
    open_stream,
    read_all,
    send_blocks,
    wait_until,
)
from websockets.exceptions import ConnectionClosed

from streamser.config import ConfigError
from streamser.server.config import ServeConfig, is_loopback
from streamser.server.protocol import encode_frames
from streamser.server.server import BackgroundServer

MAX_MESSAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[BackgroundServer, LiveClient]]:
    """A server that needs a token, with short timeouts and small limits, and a well-behaved
    live client streaming to it the whole time."""
    cfg = ServeConfig(
        port=0,
        token=TOKEN,
        max_streams=4,
        hello_timeout_s=0.5,
        idle_timeout_s=1.0,
        max_message_bytes=MAX_MESSAGE_BYTES,
        send_queue_messages=16,
        slow_consumer_s=1.0,
    )
    with BackgroundServer(cfg, FastModel()) as bg:
        good = LiveClient(bg.url, {"token": TOKEN, "hop_s": 0.25, "vad": False})
        yield bg, good
        good.stop()
        assert good.error is None


def still_served(good: LiveClient, since: float) -> None:
    """The other client got fresh estimates after the misbehaviour began."""
    wait_until(lambda: good.estimates_since(since) >= 2, 10, "the good client's estimates")


def refused(ws: Any, first: dict[str, Any]) -> tuple[str, int]:
    """The error code (from the first answer) and the close code that follows it."""
    assert first["type"] == "error", first
    assert first["message"] and "\n" not in first["message"]
    _, code = read_all(ws, timeout_s=10)
    return first["code"], code


BAD_HELLOS: list[tuple[str, Callable[[Any], None], str, int]] = [
    ("not json", lambda ws: ws.send("hello?"), "bad_hello", 1002),
    ("binary first", lambda ws: ws.send(b"\x00\x01"), "bad_hello", 1002),
    ("missing rate", lambda ws: ws.send(_hello(sample_rate_hz=None)), "bad_hello", 1002),
    ("unknown field", lambda ws: ws.send(_hello(colour="blue")), "bad_hello", 1002),
    ("rate as text", lambda ws: ws.send(_hello(sample_rate_hz="16000")), "bad_hello", 1002),
    ("bad stream name", lambda ws: ws.send(_hello(name="../etc")), "bad_hello", 1002),
    ("rate too low", lambda ws: ws.send(_hello(sample_rate_hz=4000)), "unsupported", 1003),
    ("rate too high", lambda ws: ws.send(_hello(sample_rate_hz=192000)), "unsupported", 1003),
    ("format", lambda ws: ws.send(_hello(format="mp3")), "unsupported", 1003),
    ("channels", lambda ws: ws.send(_hello(channels=9)), "unsupported", 1003),
    ("hop", lambda ws: ws.send(_hello(hop_s=0.1)), "unsupported", 1003),
    ("protocol", lambda ws: ws.send(_hello(protocol=2)), "unsupported", 1003),
    ("no token", lambda ws: ws.send(_hello(token=None)), "unauthorized", 1008),
    ("wrong token", lambda ws: ws.send(_hello(token=TOKEN[:-1] + "x")), "unauthorized", 1008),
    ("no hello", lambda ws: None, "hello_timeout", 1008),
]


def _hello(**fields: Any) -> str:
    from serve_clients import hello

    return hello(**{"token": TOKEN, **fields})


@pytest.mark.parametrize(
    ("send", "code", "close_code"),
    [case[1:] for case in BAD_HELLOS],
    ids=[case[0] for case in BAD_HELLOS],
)
def test_a_bad_hello_is_refused_with_its_code(
    served: tuple[BackgroundServer, LiveClient],
    send: Callable[[Any], None],
    code: str,
    close_code: int,
) -> None:
    bg, good = served
    since = time.monotonic()
    ws = connected(bg.url)
    send(ws)
    first = json.loads(ws.recv(timeout=10))
    assert refused(ws, first) == (code, close_code)
    still_served(good, since)
    assert metrics(bg.url)[f'streamser_errors_total{{code="{code}"}}'] >= 1


def ready_stream(bg: BackgroundServer, **fields: Any) -> Any:
    ws, ready = open_stream(bg.url, token=TOKEN, **fields)
    assert ready["type"] == "ready", ready
    return ws


def test_a_frame_that_is_not_whole_samples_is_bad_frame(
    served: tuple[BackgroundServer, LiveClient],
) -> None:
    bg, good = served
    since = time.monotonic()
    ws = ready_stream(bg, channels=2, format="pcm16")
    ws.send(b"\x00" * 4 * 100)  # 100 whole 2-channel pcm16 frames: fine
    ws.send(b"\x00" * 6)  # one and a half frames
    messages, code = read_all(ws, timeout_s=10)
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "bad_frame"
    assert "4 bytes each" in messages[-1]["message"]
    assert code == 1007
    still_served(good, since)


def test_an_oversized_message_is_too_large(served: tuple[BackgroundServer, LiveClient]) -> None:
    bg, good = served
    since = time.monotonic()
    ws = ready_stream(bg)
    ws.send(np.zeros(MAX_MESSAGE_BYTES // 4 + 1024, dtype=np.float32).tobytes())
    messages, code = read_all(ws, timeout_s=10)
    assert messages[-1]["code"] == "too_large" and code == 1009
    # Far over the limit: websockets closes without reading the message at all.
    ws = ready_stream(bg)
    with pytest.raises(ConnectionClosed):
        ws.send(np.zeros(MAX_MESSAGE_BYTES * 2, dtype=np.float32).tobytes())
        ws.recv(timeout=10)
    assert ws.close_code == 1009
    still_served(good, since)


def test_a_silent_client_is_closed_for_idleness(
    served: tuple[BackgroundServer, LiveClient],
) -> None:
    bg, good = served
    since = time.monotonic()
    ws = ready_stream(bg)
    messages, code = read_all(ws, timeout_s=10)
    assert messages[-1]["code"] == "idle_timeout" and code == 1008
    assert time.monotonic() - since >= 1.0
    still_served(good, since)


def test_text_other_than_end_after_the_hello_is_refused(
    served: tuple[BackgroundServer, LiveClient],
) -> None:
    bg, _ = served
    ws = ready_stream(bg)
    ws.send(json.dumps({"type": "pause"}))
    messages, code = read_all(ws, timeout_s=10)
    assert messages[-1]["code"] == "bad_frame" and code == 1007


def test_abrupt_disconnects_free_their_streams(served: tuple[BackgroundServer, LiveClient]) -> None:
    bg, good = served
    since = time.monotonic()
    baseline = 1  # the good client's stream
    wait_until(lambda: health(bg.url)["streams"] == baseline, 10, "earlier streams' release")
    for mode in ("file", "live"):
        ws = ready_stream(bg, mode=mode, vad=False)
        send_blocks(ws, np.zeros(3 * 16000, dtype=np.float32), 16000)
        assert health(bg.url)["streams"] == baseline + 1
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the TCP connection just ends
        ws.socket.close()
        wait_until(lambda: health(bg.url)["streams"] == baseline, 10, "the stream's release")
    still_served(good, since)


@pytest.mark.parametrize("mode", ["file", "live"])
def test_a_client_that_stops_reading_is_dropped_and_others_go_on(
    served: tuple[BackgroundServer, LiveClient], mode: str
) -> None:
    """File mode: the analysis waits for the client (lossless) and drops it once its queue
    stayed full for ``slow_consumer_s`` (``slow_consumer``). Live: the analysis never waits;
    once the client's receive buffer is full its own TCP connection stalls, so it is dropped
    either as a slow consumer (its messages stay unsent) or for idleness (its audio stopped)."""
    bg, good = served
    since = time.monotonic()
    codes = ("slow_consumer",) if mode == "file" else ("slow_consumer", "idle_timeout")

    def dropped() -> float:
        m = metrics(bg.url)
        return sum(m[f'streamser_errors_total{{code="{c}"}}'] for c in codes)

    before = dropped()
    sock = socket.create_connection(("127.0.0.1", int(bg.server.port or 0)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    ws, ready = open_stream(
        bg.url, sock=sock, token=TOKEN, hop_s=0.25, vad=False, sample_rate_hz=8000,
        format="pcm16", mode=mode,
    )  # fmt: skip
    assert ready["type"] == "ready"
    block = encode_frames(np.zeros((4 * 8000, 1), dtype=np.float32), "pcm16")  # 16 windows

    def send() -> None:
        with contextlib.suppress(ConnectionClosed):  # dropped, as it should be
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ws.send(block)
                time.sleep(0.02 if mode == "live" else 0.0)  # a fast live source, not a wait

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    # The client reads nothing: its estimates fill the server's queue and buffers for it.
    wait_until(lambda: dropped() == before + 1, 30, "the client to be dropped")
    wait_until(lambda: health(bg.url)["streams"] == 1, 20, "the dropped stream's release")
    with pytest.raises(ConnectionClosed):  # what it finally reads ends in a closed connection
        while True:
            ws.recv(timeout=20)
    sender.join(30)  # its send failed too, once its reader let the client library go on
    assert not sender.is_alive()
    still_served(good, since)


def test_two_hundred_connections_leave_no_tasks_threads_or_memory() -> None:
    def cycle(bg: BackgroundServer, i: int) -> None:
        ws, ready = open_stream(bg.url, vad=False, hop_s=0.25, mode=("file", "live")[i % 2])
        assert ready["type"] == "ready"
        ws.send(encode_frames(np.zeros((int(1.5 * 16000), 1), dtype=np.float32)))
        if i % 3 == 0:
            ws.socket.shutdown(socket.SHUT_RDWR)  # abrupt
            ws.socket.close()
        elif i % 3 == 1:
            ws.send(json.dumps({"type": "end"}))
            read_all(ws, timeout_s=20)
        else:
            ws.close()

    with BackgroundServer(ServeConfig(port=0, max_streams=4), FastModel()) as bg:
        for i in range(30):  # warm up: allocator pools, caches, the first of everything
            cycle(bg, i)
        wait_until(lambda: health(bg.url)["streams"] == 0, 20, "streams released")
        gc.collect()
        threads, rss = threading.active_count(), _rss_bytes()
        tasks = _tasks(bg)
        for i in range(200):
            cycle(bg, i)
        wait_until(lambda: health(bg.url)["streams"] == 0, 20, "streams released")
        wait_until(lambda: threading.active_count() <= threads, 20, "driver threads to end")
        wait_until(lambda: _tasks(bg) <= tasks, 20, "connection tasks to end")
        gc.collect()
        grown_mib = (_rss_bytes() - rss) / 2**20
        assert grown_mib < 25, f"RSS grew {grown_mib:.1f} MiB over 200 connections"
        assert metrics(bg.url)["streamser_connections_open"] == 0


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _tasks(bg: BackgroundServer) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), bg.loop).result(10)


# -- binding --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org", ""])
def test_a_non_loopback_bind_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="give a token"):
        ServeConfig(host=host).validate()
    assert ServeConfig(host=host, token=TOKEN).validate().host == host  # checked, never bound
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.3.2.1"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    assert ServeConfig(host=host).validate().token is None


def test_serve_refuses_an_open_bind_without_a_token_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args, says in (
        (["--host", "0.0.0.0"], "lets other machines connect"),
        (["--token", "short"], "shorter than 16 characters"),
        (["--certfile", str(tmp_path / "absent.pem"), "--keyfile", "k"], "cannot read"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "streamser", "serve", "--model", "demo", *args],
            capture_output=True, text=True, cwd=ROOT_DIR, timeout=60, env=env,
        )  # fmt: skip
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr
        assert "Traceback" not in r.stderr
