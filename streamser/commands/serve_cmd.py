"""``streamser serve``: one model for many remote streams (see docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamser.config import ModelConfig
from streamser.server.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig, token_from
from streamser.server.dependencies import require_serve_extra
from streamser.settings import build_config

if TYPE_CHECKING:
    from streamser.outputs.live import LiveOutputConfig

log = logging.getLogger("streamser")


def add_serve_args(p: argparse.ArgumentParser) -> None:
    n = p.add_argument_group("network")
    n.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}; "
                   "any other needs a token)")  # fmt: skip
    n.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    n.add_argument(
        "--token",
        help="shared secret every client must send (default: $STREAMSER_TOKEN); required to bind "
        "an address other than loopback",
    )
    n.add_argument("--certfile", metavar="FILE", help="TLS certificate (PEM): serve wss://")
    n.add_argument("--keyfile", metavar="FILE", help="TLS private key (PEM)")
    s = p.add_argument_group("streams")
    s.add_argument(
        "--max-streams", type=int, default=16, help="most streams analysed at once (default 16)"
    )
    s.add_argument(
        "--max-batch", type=int, default=8, help="most windows per forward pass (default 8)"
    )
    s.add_argument(
        "--max-wait-ms",
        type=float,
        help="wait this long for a fuller batch (default: 4 ms on a GPU, 0 on a CPU)",
    )
    s.add_argument(
        "--hello-timeout-s", type=float, default=10.0, help="seconds to wait for a client's hello"
    )
    s.add_argument(
        "--idle-timeout-s", type=float, default=30.0, help="close a client silent this long"
    )
    s.add_argument(
        "--log",
        metavar="DIR",
        help="keep each stream's estimates as a session under DIR (off by default: voices are "
        "personal data)",
    )


def add_remote_args(p: argparse.ArgumentParser) -> None:
    """``listen --server``: the model runs on a ``streamser serve``."""
    r = p.add_argument_group("remote model (streamser serve)")
    r.add_argument(
        "--server",
        metavar="URL",
        help="analyse on this streamser server (ws://HOST:PORT or wss://...); capture, the "
        "dashboard and the session stay here",
    )
    r.add_argument("--token", help="the server's token (default: $STREAMSER_TOKEN)")


def serve_config(args: argparse.Namespace) -> ServeConfig:
    max_wait_ms = args.max_wait_ms
    return ServeConfig(
        host=args.host,
        port=args.port,
        max_streams=args.max_streams,
        token=token_from(args.token),
        certfile=args.certfile,
        keyfile=args.keyfile,
        log_dir=str(Path(args.log).expanduser()) if args.log else None,
        max_batch=args.max_batch,
        max_wait_s=max_wait_ms / 1000.0 if max_wait_ms is not None else None,
        hello_timeout_s=args.hello_timeout_s,
        idle_timeout_s=args.idle_timeout_s,
    ).validate()


def serve(args: argparse.Namespace) -> int:
    cfg = serve_config(args)  # refuses an open bind without a token before anything loads
    require_serve_extra("streamser serve")
    from streamser.outputs.live import live_output_config

    outputs = live_output_config(args)  # a bad --osc or a missing pylsl: before the model loads
    model_cfg = build_config(ModelConfig, vars(args))
    from streamser.commands.listen import load_for

    model = load_for(model_cfg)
    asyncio.run(_serve(cfg, model, _records(cfg.log_dir, outputs)))
    return 0


async def _serve(cfg: ServeConfig, model: Any, records: Any) -> None:
    from streamser.labels import DEMO_WARNING
    from streamser.server.server import StreamServer

    server = StreamServer(cfg, model, log_factory=records)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(
        f"streamser: serving on {server.url} (page: {server.page_url})", file=sys.stderr, flush=True
    )
    if model.info.demo:
        log.warning("%s", DEMO_WARNING)
    await server.run(stop)
    c = server.executor.stats()
    print(
        f"streamser: stopped; {c.windows_run} windows computed in {c.batches_run} batches",
        file=sys.stderr,
    )


def _records(log_dir: str | None, outputs: LiveOutputConfig) -> Any:
    """Per client, what the server keeps of its estimates: a session under ``log_dir`` and the
    live outputs asked for; None when neither is."""
    makers: list[Callable[[dict[str, Any]], Any]] = []
    if log_dir is not None:
        from streamser.session.logger import SessionLogger

        root = Path(log_dir)
        makers.append(lambda description: SessionLogger(root, description))
    if outputs.wanted:
        from streamser.outputs.served import served_outputs

        makers.append(served_outputs(outputs))
    if not makers:
        return None
    if len(makers) == 1:
        return makers[0]
    return lambda description: _Records(makers, description)


class _Records:
    """Several records of one client, written and closed together (each closed even when
    another's close fails)."""

    def __init__(
        self, makers: list[Callable[[dict[str, Any]], Any]], description: dict[str, Any]
    ) -> None:
        self._records: list[Any] = []
        try:
            for make in makers:
                self._records.append(make(description))
        except BaseException:
            self.close({})
            raise

    def write_estimate(self, estimate: Any) -> None:
        for record in self._records:
            record.write_estimate(estimate)

    def close(self, counters: dict[str, Any]) -> None:
        with contextlib.ExitStack() as stack:
            for record in self._records:
                stack.callback(record.close, counters)
