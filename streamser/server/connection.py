"""One client stream: its WebSocket from hello to close, on the server's event loop.

The loop side only moves messages: it reads the hello and the audio frames, hands blocks to the
connection's :class:`StreamDriver` (its own thread), and sends what the driver produces through
a bounded queue, in order. Three bounds keep one client from hurting the others:

* audio in: at most ``INBOX_BLOCKS`` blocks wait for the driver. In file mode the reader then
  waits (it stops reading the socket, so TCP slows the client down); in live mode the block is
  dropped instead, and the analyzer counts the gap as dropped audio (the clock stays true);
* messages out: at most ``send_queue_messages`` estimates wait for the client (each takes a
  credit, returned once it is written). In live mode a client that lets them fill (it stopped
  reading) is dropped at once with ``slow_consumer``, counted; in file mode the analysis waits
  for it instead (lossless all the way), up to ``slow_consumer_s``;
* time: a hello within ``hello_timeout_s``, then something at least every ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from streamser.audio.vad import SpeechDetector
from streamser.contracts import Estimate
from streamser.engine.executor import Executor
from streamser.server.config import ServeConfig
from streamser.server.metrics import ServerMetrics
from streamser.server.protocol import (
    BUSY_CLOSE_CODE,
    SHUTDOWN_CLOSE_CODE,
    Hello,
    ProtocolError,
    busy_message,
    decode_frames,
    dumps,
    error_message,
    parse_hello,
)
from streamser.server.stream_driver import EstimateLog, StreamDriver


class Hub(Protocol):
    """What a connection needs of the server that owns it (``StreamServer``)."""

    cfg: ServeConfig
    executor: Executor
    metrics: ServerMetrics
    log_factory: Callable[[dict[str, Any]], EstimateLog] | None
    vad_factory: Callable[[], SpeechDetector]

    @property
    def stopping(self) -> asyncio.Event: ...

    def admit(self, streams: int) -> bool: ...

    def release(self, streams: int) -> None: ...

    def ready_message(self, hello: Hello) -> dict[str, Any]: ...

    def describe(self, hello: Hello, peer: str) -> dict[str, Any]: ...


log = logging.getLogger("streamser")

INBOX_BLOCKS = 8
"""Audio messages of one connection waiting for its driver thread."""
SEND_BUFFER_BYTES = 64 * 1024
"""The kernel's send buffer per connection: small, so a client that stops reading is noticed
(its queue fills) after kilobytes, not megabytes, of estimates."""
CLOSE_TIMEOUT_S = 2.0


class _Shutdown(Exception):
    """The server is shutting down: finish what was submitted, say ``closing``, close."""


class _Dropped(Exception):
    """This client was dropped (it stopped reading); its close is under way."""


class ClientStream:
    """One WebSocket connection from hello to close (see the module doc)."""

    def __init__(self, server: Hub, ws: ServerConnection) -> None:
        self.server = server
        self.cfg = server.cfg
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.peer = _peer(ws)
        self.hello: Hello | None = None
        self.driver: StreamDriver | None = None
        self.admitted = 0
        self.dropped_slow = False
        self._send_queue: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()
        """(text, whether it holds a credit); unbounded itself: the credits bound the driver's
        messages, and the loop's own (status, once a second) are few."""
        self._credits = threading.Semaphore(self.cfg.send_queue_messages)
        self._gone = threading.Event()
        """The connection is ending: a driver waiting for a credit must stop waiting."""
        self._slots = asyncio.Semaphore(INBOX_BLOCKS)
        self._driver_done = asyncio.Event()
        self._skips: dict[str, int] = {}
        self._estimate_log: EstimateLog | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # -- the connection's life ------------------------------------------------------------

    async def run(self) -> None:
        _small_send_buffer(self.ws)
        stopping = asyncio.ensure_future(self.server.stopping.wait())
        driver_done = asyncio.ensure_future(self._driver_done.wait())
        self._waiters = (stopping, driver_done)
        try:
            await self._serve()
        except (ConnectionClosed, _Dropped):
            pass  # the client went away, or was dropped: nothing more to tell it
        finally:
            stopping.cancel()
            driver_done.cancel()
            if self.driver is not None and not self.driver.finished.is_set():
                self._end()
                self.driver.abort()
                await self._driver_done.wait()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._close_log()
            self.server.release(self.admitted)

    async def _serve(self) -> None:
        try:
            hello = parse_hello(await self._recv(self.cfg.hello_timeout_s, "hello_timeout"))
            self._authorize(hello)
        except ProtocolError as e:
            await self._fail(e)
            return
        except _Shutdown:
            await self._close(
                SHUTDOWN_CLOSE_CODE, "shutdown", {"type": "closing", "reason": "shutdown"}
            )
            return
        if not self.server.admit(len(hello.streams)):
            self.server.metrics.refused.inc()
            message = (
                f"this server analyses at most {self.cfg.max_streams} streams at once and is "
                "full: try again later"
            )
            await self._close(BUSY_CLOSE_CODE, "max_streams", busy_message("max_streams", message))
            return
        self.admitted = len(hello.streams)
        self.hello = hello
        try:
            self._estimate_log = await self._open_log(hello)
        except Exception as e:  # the server's own records, not the client's doing
            log.error("serve: %s: cannot open its records: %s: %s", self.peer, type(e).__name__, e)
            await self._fail(  # what failed stays in the server's log: it may name its paths
                ProtocolError(
                    "internal",
                    "the server cannot keep this stream's records; its operator's log says why",
                )
            )
            return
        await self.ws.send(dumps(self.server.ready_message(hello)))
        self._start(hello)
        try:
            outcome = await self._read_audio(hello)
        except ProtocolError as e:
            await self._stop_driver("abort")
            await self._finish(e.close_code, e.code, error_message(e.code, str(e)))
            self.server.metrics.errors.labels(code=e.code).inc()
            return
        except _Shutdown:
            await self._stop_driver("drain")
            closing = {"type": "closing", "reason": "shutdown"}
            await self._finish(SHUTDOWN_CLOSE_CODE, "shutdown", closing)
            return
        if outcome == "end":
            await self._stop_driver("end")  # the driver sends the end message itself
            await self._finish(1000, "end", None)

    def _authorize(self, hello: Hello) -> None:
        expected = self.server.cfg.token
        if expected is None:
            return
        given = hello.token or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            what = "a wrong token" if given else "no token"
            raise ProtocolError(
                "unauthorized", f"the hello carries {what}: give the server's token (--token)"
            )

    def _start(self, hello: Hello) -> None:
        self.driver = StreamDriver(
            hello,
            self.server.executor,
            key=id(self),
            emit=self._emit,
            on_estimate=self._on_estimate,
            on_consumed=lambda: self.loop.call_soon_threadsafe(self._slots.release),
            on_finished=lambda: self.loop.call_soon_threadsafe(self._driver_done.set),
            vad_factory=self.server.vad_factory,
            estimate_log=self._estimate_log,
            max_inflight_windows=self.cfg.max_inflight_windows,
        )
        self.driver.start()
        self._tasks += [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._status_loop()),
        ]

    async def _read_audio(self, hello: Hello) -> str:
        """Hand audio to the driver until the client ends its stream ("end")."""
        frame = 0
        while True:
            message = await self._recv(self.cfg.idle_timeout_s, "idle_timeout")
            if isinstance(message, str):
                if _control_type(message) == "end":
                    return "end"
                raise ProtocolError(
                    "bad_frame", 'after the hello, text messages may only be {"type": "end"}'
                )
            if len(message) > self.cfg.max_message_bytes:
                raise ProtocolError(
                    "too_large",
                    f"a message of {len(message)} bytes is over this server's "
                    f"{self.cfg.max_message_bytes}: send smaller frames (about 20-100 ms each)",
                )
            block = decode_frames(message, hello)
            if hello.lossless or not self._slots.locked():
                await self._until(self._slots.acquire())
                assert self.driver is not None
                self.driver.push(frame, block, time.monotonic())
            # else (live, the driver is behind): the block is dropped; the gap is counted
            frame += len(block)

    async def _stop_driver(self, how: str) -> None:
        assert self.driver is not None
        getattr(self.driver, how)()
        await self._driver_done.wait()
        if self.driver.error is not None and how != "abort":
            self.server.metrics.errors.labels(code="internal").inc()
            self._deliver(
                dumps(error_message("internal", f"the analysis failed: {self.driver.error}"))
            )

    async def _finish(self, code: int, reason: str, last: dict[str, Any] | None) -> None:
        """Deliver everything queued (and ``last``), then close with ``code``."""
        for task in self._tasks[1:]:
            task.cancel()
        if last is not None:
            self._deliver(dumps(last))
        if not self.dropped_slow:
            self._send_queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._tasks[0]), self.cfg.idle_timeout_s)
        await self._close(code, reason, None)

    async def _fail(self, error: ProtocolError) -> None:
        self.server.metrics.errors.labels(code=error.code).inc()
        log.info("serve: %s: %s: %s", self.peer, error.code, error)
        await self._close(error.close_code, error.code, error_message(error.code, str(error)))

    async def _close(self, code: int, reason: str, last: dict[str, Any] | None) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError, asyncio.TimeoutError):
            if last is not None:
                await asyncio.wait_for(self.ws.send(dumps(last)), CLOSE_TIMEOUT_S)
            await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT_S)
        if self.ws.state is not State.CLOSED and self.ws.transport is not None:
            self.ws.transport.abort()  # the client did not take the close: cut the connection

    # -- receiving --------------------------------------------------------------------

    async def _recv(self, timeout_s: float, timeout_code: str) -> str | bytes:
        """The next message, or a ProtocolError for the timeout, or _Shutdown."""
        try:
            return await asyncio.wait_for(self._until(self.ws.recv()), timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            what = "hello" if timeout_code == "hello_timeout" else "message"
            raise ProtocolError(
                timeout_code, f"no {what} for {timeout_s:g} s: send the hello at once, then audio"
            ) from None

    async def _until(self, awaitable: Awaitable[Any]) -> Any:
        """``awaitable``'s result, unless the server stops or the driver fails first."""
        task = asyncio.ensure_future(awaitable)
        stopping, driver_done = self._waiters
        try:
            done, _ = await asyncio.wait(
                {task, stopping, driver_done}, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await task
        if stopping in done:
            raise _Shutdown
        if self.dropped_slow:
            raise _Dropped
        error = self.driver.error if self.driver is not None else None
        raise ProtocolError("internal", f"the analysis of this stream failed: {error}")

    # -- sending ----------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        """On the driver's thread: queue one of its messages, holding a send credit.

        No credit left means the client has not read ``send_queue_messages`` messages: live,
        it is dropped at once (the analysis must not wait for it); file, the analysis waits
        for it up to ``slow_consumer_s``, then drops it.
        """
        if self._gone.is_set():
            return
        wait_s = self.cfg.slow_consumer_s if self.hello and self.hello.lossless else None
        got = self._credits.acquire(timeout=wait_s) if wait_s else self._credits.acquire(False)
        if self._gone.is_set():
            if got:
                self._credits.release()
            return
        if not got:
            self.loop.call_soon_threadsafe(self._drop_slow_consumer)
            return
        self.loop.call_soon_threadsafe(self._queue, text, True)

    def _deliver(self, text: str) -> None:
        """On the loop: queue one of the loop's own messages (no credit)."""
        self._queue(text, False)

    def _queue(self, text: str, credit: bool) -> None:
        if not self.dropped_slow:
            self._send_queue.put_nowait((text, credit))

    def _end(self) -> None:
        """The connection is ending: wake a driver waiting for a credit; it sends no more."""
        self._gone.set()
        for _ in range(self.cfg.send_queue_messages):
            self._credits.release()

    async def _send_loop(self) -> None:
        while True:
            item = await self._send_queue.get()
            if item is None:
                return
            text, credit = item
            try:
                await asyncio.wait_for(self.ws.send(text), self.cfg.slow_consumer_s)
            except (TimeoutError, asyncio.TimeoutError):
                self._drop_slow_consumer()  # its TCP window stayed shut: it does not read
                return
            if credit:
                self._credits.release()

    async def _status_loop(self) -> None:
        while self.driver is not None and not self.driver.finished.is_set():
            await asyncio.sleep(self.cfg.status_interval_s)  # a period, not synchronisation
            if self.driver is not None and not self.driver.finished.is_set():
                self._deliver(dumps(self.driver.status()))

    def _drop_slow_consumer(self) -> None:
        if self.dropped_slow or self._gone.is_set():
            return
        self._end()
        self.dropped_slow = True
        self.server.metrics.errors.labels(code="slow_consumer").inc()
        log.info("serve: %s stopped reading; dropped (slow_consumer)", self.peer)
        if self.driver is not None:
            self.driver.abort()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        message = error_message(
            "slow_consumer",
            f"{self.cfg.send_queue_messages} messages waited for this client: read them as they "
            "come (in another thread or task than the one that sends)",
        )
        self._tasks.append(asyncio.ensure_future(self._close(1008, "slow_consumer", message)))

    def _on_estimate(self, est: Estimate) -> None:
        """On the driver's thread: metrics (thread-safe)."""
        before = self._skips.get(est.stream, 0)
        self._skips[est.stream] = est.skipped_windows
        self.server.metrics.on_estimate(est.latency_s, max(0, est.skipped_windows - before))

    async def _open_log(self, hello: Hello) -> EstimateLog | None:
        """The stream's records (a session, live outputs), opened off the event loop: making
        a session's files or a recorder's outlets must not hold up the other clients."""
        factory = self.server.log_factory
        if factory is None:
            return None
        return await asyncio.to_thread(factory, self.server.describe(hello, self.peer))

    async def _close_log(self) -> None:
        """Closed off the event loop too: an LSL outlet lingers for its recorder."""
        estimate_log, self._estimate_log = self._estimate_log, None
        if estimate_log is None:
            return
        counters = self.driver.counters() if self.driver is not None else {}
        await asyncio.to_thread(estimate_log.close, counters)


def _control_type(message: str) -> str | None:
    try:
        d = json.loads(message)
    except ValueError:
        return None
    return d.get("type") if isinstance(d, dict) else None


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _small_send_buffer(ws: ServerConnection) -> None:
    sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
