"""``streamser listen``: live analysis of a microphone or a file, headless or in the dashboard."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from typing import Any

from streamser.config import AudioConfig, ListenConfig, ModelConfig
from streamser.console import hint, require_terminal, stop_on_signals
from streamser.constants import PUBLISHED_WEIGHTS_BYTES
from streamser.labels import DEMO_WARNING
from streamser.outputs.headless import exit_code, print_summary, run_headless
from streamser.outputs.live import live_output_config, with_live_outputs
from streamser.settings import build_config

log = logging.getLogger("streamser")


def make_source(audio: AudioConfig) -> Any:
    """The microphone or the file; a user mistake raises a one-line SourceError."""
    from streamser.audio.mic import MicSource
    from streamser.audio.replay import FileSource

    if audio.input_path is not None:
        return FileSource(audio.input_path, realtime=not audio.fast, block_s=audio.block_s)
    device: int | str | None = audio.device
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        device = int(device)
    return MicSource(device, audio.sample_rate_hz, audio.channels, audio.block_s)


def load_for(model_cfg: ModelConfig) -> Any:
    """Load and warm the model; the licence of the real weights is stated on every load."""
    from streamser.model.runtime import load_model

    model = load_model(
        model_cfg.model,
        model_cfg.compute,
        revision=model_cfg.revision,
        verify=model_cfg.verify,
        precision=model_cfg.precision,
        backend=model_cfg.backend,
    )
    if model.info.kind == "hub" or model.info.size_bytes == PUBLISHED_WEIGHTS_BYTES:
        log.info("ExHuBERT weights: CC BY-NC-SA 4.0, research use only")
    model.warm_up()
    return model


def demo_hint(without: str) -> str:
    return f"to see streamser work without {without}: {hint('demo')}"


def listen(args: argparse.Namespace) -> int:
    from streamser.audio.devices import SourceError
    from streamser.model.errors import ModelError

    cfg = build_config(ListenConfig, vars(args))
    outputs = live_output_config(args)  # a bad --osc or a missing library stops here, early
    if not cfg.headless:
        require_terminal("listen")
    try:
        source = make_source(cfg.audio)
    except SourceError as e:
        if cfg.audio.input_path is None:
            raise SourceError(f"{e} ({demo_hint('a microphone')})") from e
        raise
    from streamser.engine.pipeline import Pipeline
    from streamser.session.marks import MarkFollower
    from streamser.session.sink import session_sink_for

    lg = cfg.logging
    remote: dict[str, Any] = {}
    if getattr(args, "server", None) is not None:
        model, remote["worker_factory"] = remote_model(cfg, source, args.server, args.token)
    else:
        try:
            model = load_for(cfg.model)
        except ModelError as e:
            raise ModelError(f"{e} ({demo_hint('the weights')})") from e
    sink = session_sink_for(lg.log, lg.log_dir, lg.record)
    pipeline = Pipeline(
        cfg,
        model,
        source,
        sink=with_live_outputs(outputs, sink, follow_marks=MarkFollower),
        source_factory=reconnector(cfg.audio, source),
        **remote,
    )
    if cfg.headless:
        return run_headless(pipeline)
    return run_dashboard(pipeline)


def remote_model(cfg: ListenConfig, source: Any, url: str, token: str | None) -> tuple[Any, Any]:
    """``--server``: the server's model as the run sees it, and the worker that streams to it
    (a one-line error when the server cannot be reached or refuses the stream)."""
    from streamser.server.dependencies import require_serve_extra

    require_serve_extra("listen --server")
    from streamser.server.config import token_from
    from streamser.server.remote_link import RemoteLink, RemoteModel, hello_for
    from streamser.server.remote_worker import remote_worker_factory

    streams = cfg.streams.resolve(source.channels)
    hello = hello_for(
        cfg.windows, streams, source.sample_rate_hz, not source.realtime, token_from(token)
    )
    link = RemoteLink(url, hello, streams).open()
    model = RemoteModel(link.ready, link.url)
    if model.info.demo:
        log.warning("the server runs the demo model: %s", DEMO_WARNING)
    return model, remote_worker_factory(link, lambda: RemoteLink(url, hello, streams))


def reconnector(audio: AudioConfig, source: Any) -> Callable[[], Any] | None:
    """For a microphone: how to open the same device again after it was lost."""
    from streamser.audio.mic import MicSource

    if not isinstance(source, MicSource):
        return None

    def reopen() -> MicSource:
        from streamser.audio.devices import refresh_portaudio

        refresh_portaudio()
        return MicSource(
            audio.device if audio.device is None else source.device.name,
            source.sample_rate_hz,
            source.channels,
            audio.block_s,
        )

    return reopen


def run_dashboard(pipeline: Any, title: str = "streamser") -> int:
    """The Textual dashboard owns the pipeline's lifecycle; a summary follows on stderr."""
    from streamser.tui.app import make_app

    stop = threading.Event()
    app = make_app(pipeline, title=title)
    with stop_on_signals(stop, on_signal=app.exit):
        app.run()
    pipeline.stop()
    print_summary(pipeline, [])
    return exit_code(pipeline)
