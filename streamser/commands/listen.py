"""``streamser listen``: live analysis of a microphone or a file, headless or in the dashboard."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from streamser.config import (
    AudioConfig,
    ListenConfig,
    ModelConfig,
    apply_file_settings,
    read_config_file,
)
from streamser.constants import PUBLISHED_WEIGHTS_BYTES
from streamser.contracts import Estimate

log = logging.getLogger("streamser")


def build_listen_config(args: argparse.Namespace) -> ListenConfig:
    """Defaults, then the config file, then the command line (flags left unset do not override)."""
    cfg = apply_file_settings(ListenConfig(), read_config_file())
    m, a, w, lg = cfg.model, cfg.audio, cfg.windows, cfg.logging

    def pick(name: str, current: Any) -> Any:
        value = getattr(args, name, None)
        return current if value is None else value

    m = replace(
        m,
        model=pick("model", m.model),
        revision=pick("revision", m.revision),
        compute=pick("compute", m.compute),
        verify=m.verify and getattr(args, "verify", True),
        quantize=pick("quantize", m.quantize),
        backend=pick("backend", m.backend),
    )
    a = replace(
        a,
        device=pick("device", a.device),
        sample_rate_hz=pick("samplerate", a.sample_rate_hz),
        channels=pick("channels", a.channels),
        input_path=pick("input", a.input_path),
        fast=bool(getattr(args, "fast", False)),
        reconnect=pick("reconnect", a.reconnect),
    )
    w = replace(
        w,
        hop_s=pick("hop", w.hop_s),
        first_s=3.0 if getattr(args, "full_windows_only", False) else w.first_s,
        smooth_s=pick("smooth_s", w.smooth_s),
        vad=w.vad and not getattr(args, "no_vad", False),
        vad_threshold=pick("vad_threshold", w.vad_threshold),
        skip_non_speech=bool(getattr(args, "skip_non_speech", False)),
    )
    lg = replace(
        lg,
        log=lg.log and not getattr(args, "no_log", False),
        log_dir=pick("log_dir", lg.log_dir),
        record=lg.record or bool(getattr(args, "record", False)),
    )
    return ListenConfig(
        model=m, audio=a, windows=w, logging=lg, headless=bool(getattr(args, "headless", False))
    ).validate()


def make_source(audio: AudioConfig) -> Any:
    """The microphone or the file; a user mistake raises a one-line SourceError."""
    from streamser.audio.sources import FileSource, MicSource

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
        quantize=model_cfg.quantize,
        backend=model_cfg.backend,
    )
    if model.info.kind == "hub" or model.info.size_bytes == PUBLISHED_WEIGHTS_BYTES:
        log.info("ExHuBERT weights: CC BY-NC-SA 4.0, research use only")
    model.warm_up()
    return model


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_signal: Callable[[], Any] | None = None
) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (terminal closed) all end the run cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.getsignal(s) for s in sigs}

    def handler(signum: int, frame: object) -> None:
        stop.set()
        if on_signal is not None:
            on_signal()

    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


DEMO_HINT = "to see streamser work without them: streamser demo"


def listen(args: argparse.Namespace) -> int:
    from streamser.audio.devices import SourceError
    from streamser.model.errors import ModelError

    cfg = build_listen_config(args)
    try:
        source = make_source(cfg.audio)
    except SourceError as e:
        if cfg.audio.input_path is None:
            raise SourceError(f"{e} ({DEMO_HINT.replace('them', 'a microphone')})") from e
        raise
    try:
        model = load_for(cfg.model)
    except ModelError as e:
        raise ModelError(f"{e} ({DEMO_HINT.replace('them', 'the weights')})") from e
    from streamser.engine.pipeline import Pipeline
    from streamser.session.sink import session_sink_for

    lg = cfg.logging
    pipeline = Pipeline(
        cfg,
        model,
        source,
        sink=session_sink_for(lg.log, lg.log_dir, lg.record),
        source_factory=reconnector(cfg.audio, source),
    )
    if cfg.headless:
        return run_headless(pipeline)
    return run_dashboard(pipeline)


def reconnector(audio: AudioConfig, source: Any) -> Callable[[], Any] | None:
    """For a microphone: how to open the same device again after it was lost."""
    from streamser.audio.sources import MicSource

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


class _StdoutWriter:
    """Lossless bus consumer: one JSON object per line on stdout, flushed per line."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def __call__(self, est: Estimate) -> None:
        sys.stdout.write(json.dumps(est.to_json_dict(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        self.latencies.append(est.latency_s)


def run_headless(pipeline: Any) -> int:
    writer = _StdoutWriter()
    pipeline.bus.subscribe_lossless("stdout", writer)
    stop = threading.Event()
    with stop_on_signals(stop):
        pipeline.start()
        while not stop.is_set() and not pipeline.wait(0.2):
            pass
        pipeline.stop()
    print_summary(pipeline, writer.latencies)
    return exit_code(pipeline)


def exit_code(pipeline: Any) -> int:
    """0 for a run that ended as asked; 1 when the model or the input failed for good."""
    if pipeline.worker.error is not None:
        return 1
    error = getattr(pipeline.source, "error", None)
    if error is not None:
        print(f"streamser: error: input lost: {error}", file=sys.stderr)
        return 1
    return 0


def print_summary(pipeline: Any, latencies: list[float]) -> None:
    c = pipeline.counters()
    parts = [
        f"{c['estimates']} estimates over {c['stream_s']:.1f} s of audio",
        f"{c['skipped_windows']} skipped windows",
        f"{c['dropped_samples']} dropped samples",
    ]
    if c["estimates"]:
        parts.append(f"compute {c['compute_s_total'] / c['estimates'] * 1000:.1f} ms/window")
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95])
        parts.append(f"latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s")
    status = pipeline.status()
    if status.session_path is not None:
        parts.append(f"session {status.session_path}")
    if status.log_error:
        parts.append(status.log_error)
    print("streamser: " + "; ".join(parts), file=sys.stderr)
