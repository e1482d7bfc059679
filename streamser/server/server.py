"""``streamser serve``: one model, one executor, many remote streams.

:class:`StreamServer` owns what every connection shares: the model and its :class:`Executor`
(so the windows of all clients are batched together), admission (``max_streams``), the metrics
and the graceful shutdown. Each connection is a :class:`ClientStream`.

Shutdown (SIGINT/SIGTERM, or :meth:`StreamServer.request_stop`) is ordered so nothing computed
is lost: the listening socket closes (no new clients), each connection stops reading, its
windows already at the model finish and are delivered, then ``closing`` and a close (1001);
only then does the executor stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from streamser.audio.vad import SpeechDetector
from streamser.constants import SAMPLE_RATE_HZ, WINDOW_S
from streamser.contracts import AnalysisModel
from streamser.engine.executor import Executor, ExecutorConfig
from streamser.labels import DEMO_WARNING
from streamser.server.config import ServeConfig
from streamser.server.connection import ClientStream
from streamser.server.http import Router
from streamser.server.metrics import ServerMetrics
from streamser.server.protocol import PROTOCOL_VERSION, STREAM_PATH, Hello
from streamser.server.stream_driver import EstimateLog
from streamser.version import __version__

log = logging.getLogger("streamser")

HARD_LIMIT_FACTOR = 4
"""websockets refuses messages over this many times ``max_message_bytes`` without reading
them (close 1009); messages between the two limits are read and answered with ``too_large``."""
SESSION_SCHEMA_VERSION = 3
"""meta.json's layout for a served stream's session: that of ``listen`` with streams."""
STOP_TIMEOUT_S = 30.0


class StreamServer:
    """The server's shared state and lifecycle (see the module doc)."""

    def __init__(
        self,
        cfg: ServeConfig,
        model: AnalysisModel,
        *,
        executor: Executor | None = None,
        log_factory: Callable[[dict[str, Any]], EstimateLog] | None = None,
        vad_factory: Callable[[], SpeechDetector] = SpeechDetector,
    ) -> None:
        self.cfg = cfg.validate()
        self.model = model
        self.executor = executor or Executor(
            model,
            ExecutorConfig(
                max_batch=cfg.max_batch,
                max_wait_s=cfg.max_wait_s,
                max_pending=max(256, cfg.max_streams * (cfg.max_inflight_windows + 1)),
            ),
        )
        self.log_factory = log_factory
        self.vad_factory = vad_factory
        self.metrics = ServerMetrics(self.executor)
        self.active_streams = 0
        self.port: int | None = None
        self.url: str | None = None
        """The stream's URL, once bound."""
        self.page_url: str | None = None
        """The browser page's URL, once bound."""
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def stopping(self) -> asyncio.Event:
        assert self._stopping is not None, "start() first"
        return self._stopping

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving (the port is known afterwards)."""
        self._stopping = asyncio.Event()
        self.executor.start()
        self._server = await serve(
            self._handle,
            self.cfg.host,
            self.cfg.port,
            process_request=Router(self.health, self.metrics.render),
            max_size=self.cfg.max_message_bytes * HARD_LIMIT_FACTOR,
            compression=None,  # audio does not compress; deflate would only cost CPU
            ssl=self._ssl_context(),
            open_timeout=self.cfg.hello_timeout_s,
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        self.url = f"{self.cfg.scheme}://{host}:{self.port}{STREAM_PATH}"
        self.page_url = f"{'https' if self.cfg.tls else 'http'}://{host}:{self.port}/"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully."""
        if self._server is None:
            await self.start()
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let every connection finish its submitted windows, close them."""
        if self._server is None:
            return
        self.stopping.set()
        self._server.close(close_connections=False)
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)
        await asyncio.to_thread(self.executor.stop, True)
        self._server = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cfg.certfile), str(self.cfg.keyfile))
        return context

    async def _handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.metrics.connections.inc()
        try:
            await ClientStream(self, ws).run()
        except Exception:
            log.exception("serve: a connection failed")
        finally:
            self.metrics.connections.dec()
            self._handlers.discard(task)

    # -- admission --------------------------------------------------------------------

    def admit(self, streams: int) -> bool:
        with self._lock:
            if self.active_streams + streams > self.cfg.max_streams:
                return False
            self.active_streams += streams
            self.metrics.streams.set(self.active_streams)
            return True

    def release(self, streams: int) -> None:
        if not streams:
            return
        with self._lock:
            self.active_streams -= streams
            self.metrics.streams.set(self.active_streams)

    # -- what the server says about itself ----------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.executor.alive and self.executor.error is None,
            "streams": self.active_streams,
            "model": self.model.info.name,
            "demo": self.model.info.demo,
        }

    def model_description(self) -> dict[str, Any]:
        info = self.model.info
        return {
            "name": info.name,
            "revision": info.revision,
            "sha256": info.sha256,
            "sha256_status": info.sha256_status,
            "demo": info.demo,
            "n_params": info.n_params,
            **({"warning": DEMO_WARNING} if info.demo else {}),
        }

    def ready_message(self, hello: Hello) -> dict[str, Any]:
        compute = self.model.compute_info()
        return {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "server_version": __version__,
            "streams": [s.to_json_dict() for s in hello.streams],
            "model": self.model_description(),
            "precision": compute.precision,
            "device": compute.device,
            "backend": compute.backend,
            "window_s": WINDOW_S,
            "hop_s": hello.windows.hop_s,
            "first_s": hello.windows.first_s,
            "vad": hello.windows.vad,
            "mode": hello.mode,
        }

    def describe(self, hello: Hello, peer: str) -> dict[str, Any]:
        """A served stream as its session's meta.json records it (like ``listen``'s)."""
        compute = self.model.compute_info()
        return {
            "schema_version": SESSION_SCHEMA_VERSION,
            "streamser_version": __version__,
            "model": {"kind": self.model.info.kind, **self.model_description()},
            "compute": {
                "device": compute.device,
                "dtype": compute.dtype,
                "precision": compute.precision,
                "backend": compute.backend,
            },
            "audio": {
                "source": f"streamser serve client {peer}",
                "kind": "RemoteStream",
                "server": self.url,
                "client_host": peer_host(peer),
                "sample_rate_hz": hello.sample_rate_hz,
                "channels": hello.channels,
                "stream_rate_hz": SAMPLE_RATE_HZ,
                "realtime": not hello.lossless,
            },
            "streams": [s.to_json_dict() for s in hello.streams],
            "config": {"windows": asdict(hello.windows), "client": hello.describe()},
        }


def peer_host(peer: str) -> str:
    """The host of a ``host:port`` peer (an IPv6 host keeps its colons)."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class BackgroundServer:
    """A :class:`StreamServer` on an event loop of its own thread: for tests, benchmarks and
    embedding. ``with BackgroundServer(cfg, model) as server:`` serves at ``server.url``."""

    def __init__(self, cfg: ServeConfig, model: AnalysisModel, **kwargs: Any) -> None:
        self.server = StreamServer(cfg, model, **kwargs)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="streamser-serve", daemon=True)

    @property
    def url(self) -> str:
        assert self.server.url is not None
        return self.server.url

    def start(self) -> BackgroundServer:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Graceful shutdown (as on SIGTERM); returns when it is done."""
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S + 10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        await self.server.run(self._stop)
