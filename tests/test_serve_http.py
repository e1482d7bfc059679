"""``streamser serve``'s plain HTTP on the stream's port, the Origin check, TLS, and the serve
command's own start and graceful stop."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError

import pytest
from conftest import ROOT_DIR, require_tools
from serve_clients import FastModel, health, hello, http_get, page_url
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from streamser.server.config import ServeConfig
from streamser.server.server import BackgroundServer


def test_the_page_health_and_metrics_share_the_stream_port() -> None:
    with BackgroundServer(ServeConfig(port=0), FastModel()) as bg:
        base = page_url(bg.url)
        status, ctype, body = http_get(base)
        assert status == 200 and ctype.startswith("text/html") and b"app.js" in body
        for name, kind in (("app.js", "text/javascript"), ("worklet.js", "text/javascript")):
            status, ctype, body = http_get(base + name)
            assert status == 200 and ctype.startswith(kind) and len(body) > 100
        assert health(bg.url) == {"ok": True, "streams": 0, "model": "fast stand-in", "demo": True}
        status, ctype, body = http_get(base + "metrics")
        assert ctype.startswith("text/plain") and b"streamser_batch_size_bucket" in body
        with pytest.raises(HTTPError) as missing:
            http_get(base + "../etc/passwd")
        assert missing.value.code == 404


def test_other_sites_pages_cannot_open_a_stream() -> None:
    with BackgroundServer(ServeConfig(port=0), FastModel()) as bg:
        host = bg.url.split("//")[1].split("/")[0]
        with pytest.raises(InvalidStatus) as refused:
            connect(bg.url, origin="https://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
        own_page = f"http://{host}"
        with connect(bg.url, origin=own_page, open_timeout=10) as own:
            own.send(hello())
            assert json.loads(own.recv(timeout=10))["type"] == "ready"


def test_tls_serves_wss(tmp_path: Path) -> None:
    require_tools("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    cfg = ServeConfig(port=0, certfile=str(cert), keyfile=str(key))
    with BackgroundServer(cfg, FastModel()) as bg:
        assert bg.url.startswith("wss://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with connect(bg.url, ssl=trusted, open_timeout=10) as ws:
            ws.send(hello())
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with pytest.raises(ssl.SSLCertVerificationError):  # an unknown certificate is refused
            connect(bg.url, ssl=ssl.create_default_context(), open_timeout=10)


def test_serve_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamser", "serve", "--model", "demo", "--port", "0"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "serving on" in line:
            break
    url = line.split("serving on ")[1].split()[0]
    assert url.startswith("ws://127.0.0.1:")
    assert health(url)["ok"] is True
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(60) == 0, rest
    assert "demo model: random weights" in rest
    assert "stopped; 0 windows computed" in rest


def test_the_command_line_starts_without_the_serve_libraries() -> None:
    code = (
        "import sys; from streamser.cli import build_parser; build_parser();"
        "print(sorted(m for m in ('websockets', 'prometheus_client', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_missing_serve_extra_is_one_line_naming_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from streamser.server import dependencies

    real = importlib.util.find_spec
    monkeypatch.setattr(
        dependencies.importlib.util,
        "find_spec",
        lambda name: None if name == "websockets" else real(name),
    )
    with pytest.raises(dependencies.MissingExtraError) as e:
        dependencies.require_serve_extra("streamser serve")
    assert str(e.value) == "streamser serve needs websockets: pip install 'streamser[serve]'"
