"""``streamser serve --lsl --osc``: each client's streams reach a lab recorder and an OSC receiver
as the server computes them, under ids that survive a reconnection and never collide between
clients connected at once.

The server is the real command line on loopback; the clients are real WebSocket clients; the
recorder is a pylsl inlet and the receiver a python-osc server, both on this machine (LSL is
confined to it by ``tests/lsl_api.cfg``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamser.outputs.lsl import markers_name, markers_source_id, source_id, stream_name
from streamser.outputs.served import ClientLabels, client_label
from streamser.server.config import ServeConfig
from streamser.server.server import BackgroundServer
from tests.conftest import ROOT_DIR
from tests.serve_clients import (
    FastModel,
    estimates,
    health,
    live_client,
    open_stream,
    read_all,
    send_blocks,
    wait_until,
)
from tests.test_listen_cli import SPEECH, env_for
from tests.test_lsl import Inlet, capture_errors_s, check_values, event_texts
from tests.test_osc import OscReceiver, affect_of, probs_of, same, speech_events
from tests.test_serve_remote_listen import Server as ServeProcess


class Server(ServeProcess):
    """``streamser serve`` with live outputs (LSL confined to loopback by the test config its
    environment carries)."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        super().__init__(tmp_path, 0, *extra, env=env_for(tmp_path))

    def stopped(self) -> str:
        """Stop it (SIGTERM); everything it wrote on stderr."""
        assert self.stop() == 0, "".join(self.lines)
        self.drained.wait(10)
        return "".join(self.lines)

    def input_name(self, label: str) -> str:
        """The input part of a client's LSL source ids (its host is loopback here)."""
        return f"{self.url} client 127.0.0.1/{label}"


@pytest.fixture
def osc() -> Iterator[OscReceiver]:
    with OscReceiver() as receiver:
        yield receiver


def two_voices(tmp_path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    return np.stack([audio, 0.5 * audio[::-1]], axis=1), rate


def test_a_per_channel_client_reaches_lsl_and_osc_stream_by_stream(
    tmp_path: Path, osc: OscReceiver
) -> None:
    server = Server(tmp_path, "--lsl", "--osc", f"127.0.0.1:{osc.port}")
    try:
        audio, rate = two_voices(tmp_path)
        ws, ready = open_stream(
            server.url, sample_rate_hz=rate, channels=2, per_channel=True,
            stream_names=["alice", "bob"],
        )  # fmt: skip
        assert ready["type"] == "ready", ready
        # The outlets exist once the client is ready: a recorder can connect before any audio.
        name = server.input_name("alice+bob")
        inlets = {s: Inlet(source_id(name, s)) for s in ("alice", "bob")}
        markers = Inlet(markers_source_id(name))
        sender = threading.Thread(
            target=lambda: (send_blocks(ws, audio, rate), ws.send(json.dumps({"type": "end"})))
        )
        sender.start()
        messages, code = read_all(ws)
        sender.join(30)
        assert code == 1000
        rows = estimates(messages)
        for stream, inlet in inlets.items():
            mine = [r for r in rows if r["stream"] == stream]
            assert inlet.info.name() == stream_name(stream)
            assert inlet.desc("streamser/client") == "alice+bob"
            samples = inlet.wait_ended()  # the client left: its streams end with it
            check_values(samples, mine)
            errors = capture_errors_s(samples, mine)
            assert max(map(abs, errors)) < 0.020, errors
            sent = osc.wait_for(f"/streamser/{stream}/affect", len(mine))
            assert [same(list(m.args), affect_of(r)) for m, r in zip(sent, mine)] == [True] * len(
                mine
            )
            probs = osc.wait_for(f"/streamser/{stream}/probs", len(mine))
            assert all(same(list(m.args), probs_of(r)) for m, r in zip(probs, mine))
        assert markers.info.name() == markers_name("alice+bob")
        events = markers.wait_ended()
        for stream in inlets:
            mine = [r for r in rows if r["stream"] == stream]
            assert event_texts(events, lambda t, s=stream: t.endswith(f" {s}")) == [
                f"{e} {stream}" for e in speech_events(mine)
            ]
    finally:
        err = server.stopped()
    assert f"lsl: {len(rows)} estimates" in err, err


def test_clients_connected_at_once_never_share_ids_and_a_returning_one_gets_its_own_back(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, "--lsl")
    try:
        first, ready = open_stream(server.url, mode="live")
        second, again = open_stream(server.url, mode="live")
        assert ready["type"] == again["type"] == "ready"
        # Both unnamed: both streams are "main"; the second client's ids are numbered.
        a = Inlet(source_id(server.input_name("main"), "main"))
        b = Inlet(source_id(server.input_name("main-2"), "main"))
        assert a.desc("streamser/client") == "main" and b.desc("streamser/client") == "main-2"
        first.close()
        a.wait_ended()
        # Once the server has let the first client go (its outputs closed, then its streams
        # released), it comes back while the second is still there: its label is free again.
        wait_until(lambda: health(server.url)["streams"] == 1, what="the first client released")
        back, ready = open_stream(server.url, mode="live")
        assert ready["type"] == "ready"
        assert Inlet(source_id(server.input_name("main"), "main")).info.name() == "streamser-main"
        back.close()
        second.close()
        b.wait_ended()
    finally:
        server.stopped()


def test_a_bad_osc_target_stops_serve_before_the_model_loads(tmp_path: Path) -> None:
    argv = ["serve", "--model", "no/such-model", "--osc", "nowhere"]
    done = subprocess.run(
        [sys.executable, "-m", "streamser", *argv],
        capture_output=True, text=True, cwd=ROOT_DIR, env=env_for(tmp_path), timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--osc nowhere" in lines[0] and "HOST:PORT" in lines[0], lines


def test_labels_are_numbered_only_while_taken() -> None:
    labels = ClientLabels()
    assert [labels.take("main"), labels.take("main"), labels.take("main")] == [
        "main", "main-2", "main-3",
    ]  # fmt: skip
    labels.give_back("main-2")
    assert labels.take("main") == "main-2"
    assert len(labels) == 3
    described: dict[str, Any] = {"streams": [{"name": "alice"}, {"name": "bob"}]}
    assert client_label(described) == "alice+bob"


def test_records_that_cannot_be_opened_are_a_typed_error_to_that_client_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server keeping records (``--log``, ``--lsl``) that cannot open them for one client
    tells that client ``internal`` and closes it; a client already streaming goes on."""

    def records(description: dict[str, Any]) -> Any:
        if description["streams"][0]["name"] == "unlucky":
            raise OSError(28, "No space left on device")
        return Kept()

    class Kept:
        def write_estimate(self, estimate: Any) -> None:
            pass

        def close(self, counters: dict[str, Any]) -> None:
            pass

    cfg = ServeConfig(port=0, max_streams=4)
    with BackgroundServer(cfg, FastModel(), log_factory=records) as bg:
        with live_client(bg.url, hop_s=0.25, vad=False) as good:
            since = time.monotonic()
            ws, first = open_stream(bg.url, name="unlucky")
            assert first["type"] == "error" and first["code"] == "internal", first
            assert "records" in first["message"]
            assert "space" not in first["message"]  # the server's details stay in its log
            assert "No space left on device" in caplog.text
            assert "\n" not in first["message"]
            _, code = read_all(ws, timeout_s=10)
            assert code == 1011
            wait_until(lambda: good.estimates_since(since) >= 2, 10, "the good client's estimates")
            # The refused client holds no stream once its connection is over.
            wait_until(lambda: health(bg.url)["streams"] == 1, 10, "the refused stream released")
        assert good.error is None
