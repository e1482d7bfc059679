"""Wires a source, the capture ring, the inference worker and the result bus, and runs them.

``Pipeline`` is what ``listen`` runs headless and what the dashboard drives (it implements the
dashboard's controller protocol by delegating: counters to :class:`RunStats`, the record of the
run to its :class:`RunSink`, reconnection to :class:`DeviceSupervisor`). Start and stop are
idempotent, it is a context manager, and shutdown is ordered so nothing computed is lost: the
source stops first (closing the ring), the worker finishes its current window, the bus drains
every lossless subscriber (the session log among them), and only then is the sink closed with
the final counters.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from streamser.audio.mic import MicSource
from streamser.audio.ring import RingBuffer
from streamser.audio.sources import AudioSource
from streamser.audio.vad import SpeechDetector
from streamser.config import ListenConfig
from streamser.constants import HISTORY_MAX_ESTIMATES, SAMPLE_RATE_HZ
from streamser.contracts import (
    AnalysisModel,
    Estimate,
    StatusSnapshot,
    StreamStatus,
    estimates_after,
)
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.bus import ResultBus
from streamser.engine.executed_model import ExecutedModel
from streamser.engine.executor import Executor, ExecutorConfig
from streamser.engine.sinks import RunContext, RunSink, SinkStatus
from streamser.engine.stats import RunStats
from streamser.engine.supervisor import Commit, DeviceSupervisor, SourceFactory
from streamser.engine.worker import InferenceWorker
from streamser.labels import DEMO_WARNING
from streamser.version import __version__

log = logging.getLogger("streamser")

WorkerFactory = Callable[..., InferenceWorker]
"""Builds the run's worker from InferenceWorker's arguments: the default runs the model here;
``streamser.server.remote_worker.RemoteWorker`` sends the audio to a ``streamser serve``."""

SCHEMA_VERSION = 3
"""meta.json's layout: 2 = ``dropped_samples`` in 16 kHz samples, recorder drops counted;
3 = ``streams`` lists the analysed streams (and ``counters.streams`` their windows)."""


class Pipeline:
    """A live (or file-replay) analysis run: source -> ring -> worker -> bus -> consumers."""

    is_replay = False

    def __init__(
        self,
        cfg: ListenConfig,
        model: AnalysisModel,
        source: AudioSource,
        *,
        sink: RunSink | None = None,
        vad_factory: Callable[[], SpeechDetector] | None = None,
        max_batch: int = 8,
        source_factory: SourceFactory | None = None,
        executor: Executor | None = None,
        worker_factory: WorkerFactory = InferenceWorker,
    ) -> None:
        self.cfg, self.model, self.source, self.sink = cfg, model, source, sink
        self.streams = cfg.streams.resolve(source.channels)
        """The analysed streams: the mono mix, or one per chosen input channel."""
        self._owns_executor = executor is None
        # One round batches one window of every stream (live) or about max_batch (lossless).
        executor_batch = max(1, max_batch, len(self.streams))
        self.executor = executor or Executor(model, ExecutorConfig(max_batch=executor_batch))
        """The one thread that runs the model; shared when the caller passes one in."""
        self.stats = RunStats(source.sample_rate_hz)
        self.bus: ResultBus[Estimate] = ResultBus(on_failure=self._on_consumer_failure)
        make_vad = vad_factory or SpeechDetector
        executed = ExecutedModel(self.executor, model)
        self.analyzers = [
            StreamAnalyzer(
                executed,
                cfg.windows,
                source.sample_rate_hz,
                make_vad() if cfg.windows.vad else None,
                watch_silence=isinstance(source, MicSource),
                stream=stream,
            )
            for stream in self.streams
        ]
        self.analyzer = self.analyzers[0]
        self._muted = False
        capacity = max(1, round(cfg.audio.ring_s * source.sample_rate_hz))
        self.ring = RingBuffer(capacity, source.channels, policy=source.ring_policy())
        self.worker = worker_factory(
            self.analyzers,
            self.ring,
            self.ring.reader("analyzer"),
            self.bus.publish,
            self.stats,
            lossless=not source.realtime,
            max_batch=max_batch if not source.realtime else 1,
            is_muted=lambda: self._muted,
            awaits_reconnect=self._awaits_reconnect,
        )
        self.supervisor: DeviceSupervisor | None = None
        if source_factory is not None and cfg.audio.reconnect:
            self.supervisor = DeviceSupervisor(
                source_factory, lambda: self.source, capacity, self._attach_replacement
            )
        self._history: deque[Estimate] = deque(maxlen=HISTORY_MAX_ESTIMATES)
        self._history_lock = threading.Lock()
        self.bus.subscribe_callback("history", self._remember)
        self.consumer_failures: list[str] = []
        self._lifecycle = threading.Lock()
        self._started = False
        self._stopped = False
        self.finished = self.worker.finished

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open the record, start the worker and then the source (and the supervisor)."""
        with self._lifecycle:
            if self._started:
                return
            self._started = True
            if self.sink is not None:
                self.sink.open(
                    RunContext(
                        self.bus,
                        self.ring,
                        self.describe(),
                        lambda: self._muted,
                        self._awaits_reconnect,
                    )
                )
            if self._owns_executor:
                self.executor.start()
            self.worker.start()
            self.source.start(self.ring)
            if self.supervisor is not None:
                self.supervisor.start()

    def stop(self) -> None:
        """Ordered, idempotent shutdown; the record is closed with every counter."""
        with self._lifecycle:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
            if self.supervisor is not None:
                self.supervisor.stop()
            self.source.stop()
            self.ring.close()
            self.worker.stop()
            if self._owns_executor:
                self.executor.stop(drain=True)
            self.bus.close()
            if self.sink is not None:
                self.sink.close(self.counters())

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until a finite source has been fully analysed (or the worker failed)."""
        return self.worker.finished.wait(timeout_s)

    # -- what the run is and what it counted --------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The run as meta.json records it."""
        info, compute = self.model.info, self.model.compute_info()
        return {
            "schema_version": SCHEMA_VERSION,
            "streamser_version": __version__,
            "model": {
                "name": info.name,
                "kind": info.kind,
                "revision": info.revision,
                "sha256": info.sha256,
                "sha256_status": info.sha256_status,
                "demo": info.demo,
                "n_params": info.n_params,
                **({"note": DEMO_WARNING} if info.demo else {}),
                **({"server": info.loaded_from} if info.kind == "remote" else {}),
            },
            "compute": {
                "device": compute.device,
                "dtype": compute.dtype,
                "precision": compute.precision,
                "backend": compute.backend,
            },
            "audio": {
                "source": self.source.description,
                "kind": type(self.source).__name__,
                "sample_rate_hz": self.source.sample_rate_hz,
                "channels": self.source.channels,
                "stream_rate_hz": SAMPLE_RATE_HZ,
                "realtime": self.source.realtime,
            },
            "streams": [stream.to_json_dict() for stream in self.streams],
            "config": self.cfg.to_dict(),
        }

    def counters(self) -> dict[str, Any]:
        """Every counter of the run, from one snapshot: meta.json and the end-of-run summary."""
        c = self.stats.snapshot()
        sink = self._sink_status()
        return {
            "estimates": c.estimates,
            "windows_due": c.windows_due,
            "skipped_windows": c.skipped_windows,
            "muted_windows": c.muted_windows,
            "dropped_samples": c.dropped_samples,
            "ring_dropped_frames": c.ring_dropped_frames,
            "gap_frames": c.gap_frames,
            "recorder_dropped_frames": sink.recorder_dropped_frames,
            "nonfinite_samples": c.nonfinite_samples,
            "huge_samples": c.huge_samples,
            "frames_in": c.frames_in,
            "stream_s": c.stream_s,
            "compute_s_total": round(c.compute_s_total, 4),
            "half_fallbacks": self.model.compute_info().fallbacks,
            "consumer_failures": list(self.consumer_failures),
            "bus": self.bus.stats(),
            "source_status_flags": getattr(self.source, "status_flags", 0),
            "reconnects": self.supervisor.reconnects if self.supervisor is not None else 0,
            "source_error": str(self.source.error) if self.source.error is not None else None,
            "vad_frames_evicted": c.vad_frames_evicted,
            "streams": [stream.to_dict() for stream in c.streams],
        }

    def status(self) -> StatusSnapshot:
        """The status line's view, built from the same counters snapshot."""
        c, sink, compute = self.stats.snapshot(), self._sink_status(), self.model.compute_info()
        hop_s = self.cfg.windows.hop_s
        lost = self.supervisor.error_text if self.supervisor is not None else None
        source_error = lost or self.source.error
        return StatusSnapshot(
            device=self.source.description,
            sample_rate_hz=self.source.sample_rate_hz,
            model_name=self.model.info.name,
            demo_model=self.model.info.demo,
            compute_device=compute.device,
            dtype=compute.precision,
            hop_s=hop_s,
            rtf=c.last_compute_s / hop_s if c.last_compute_s else None,
            latency_s=c.last_latency_s,
            skipped_windows=c.skipped_windows,
            dropped_samples=c.dropped_samples,
            recorder_dropped_frames=sink.recorder_dropped_frames,
            recording=sink.recording,
            muted=self._muted,
            logging=sink.logging,
            log_error=sink.log_error,
            session_path=sink.session_path,
            level_dbfs=self.analyzer.level.level_dbfs,
            clipping=any(a.level.clipping for a in self.analyzers),
            silence_warning=self.worker.silence_warning(),
            source_error=str(source_error) if source_error is not None else None,
            finished=self.worker.finished.is_set(),
            streams=tuple(
                StreamStatus(
                    name=a.stream.name,
                    level_dbfs=a.level.level_dbfs,
                    clipping=a.level.clipping,
                    silence_warning=a.silence_warning,
                    estimates=c.stream(a.stream.name).estimates,
                    skipped_windows=c.stream(a.stream.name).skipped_windows,
                )
                for a in self.analyzers
            ),
        )

    def _sink_status(self) -> SinkStatus:
        return self.sink.status() if self.sink is not None else SinkStatus()

    # -- controller protocol (the dashboard) --------------------------------------------

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        self.bus.subscribe_callback(f"subscriber-{id(fn)}", fn)

    def history_since(self, seq: int) -> list[Estimate]:
        with self._history_lock:
            return estimates_after(seq, self._history)

    def _remember(self, est: Estimate) -> None:
        with self._history_lock:
            self._history.append(est)

    def stream_time_s(self) -> float:
        return self.stats.snapshot().stream_s

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        if muted == self._muted:
            return
        self._muted = muted
        if self.sink is not None:
            self.sink.on_mute(muted, self.stream_time_s())

    def set_recording(self, on: bool) -> None:
        if self.sink is None:
            log.warning("recording needs a session: run without --no-log")
            return
        self.sink.set_recording(on, self.ring.frames_written)

    def add_mark(self, note: str) -> None:
        if self.sink is None:
            log.warning("marks need a session: run without --no-log")
            return
        self.sink.add_mark(self.stream_time_s(), note)

    # -- device loss ----------------------------------------------------------------------

    def _awaits_reconnect(self) -> bool:
        sup = self.supervisor
        return sup is not None and not sup.stopped and self.source.error is not None

    def _attach_replacement(self, ring: RingBuffer) -> Commit:
        """Readers on a replacement's ring before it runs; the commit switches the run to it."""
        reader = ring.reader("analyzer")
        tap_reader = (
            ring.reader("recorder") if self.sink is not None and self.sink.wants_tap() else None
        )

        def commit(new: AudioSource, gap_frames: int) -> None:
            offset = self.worker.frame_offset + self.ring.frames_written + gap_frames
            self.ring, self.source = ring, new
            self.worker.rebind(ring, reader, offset)
            if self.sink is not None and tap_reader is not None:
                self.sink.rebind(ring, tap_reader, offset)

        return commit

    # -- failures -----------------------------------------------------------------------

    def _on_consumer_failure(self, name: str, exc: BaseException) -> None:
        self.consumer_failures.append(f"{name}: {type(exc).__name__}: {exc}")
        log.error("estimate consumer %r detached: %s", name, exc)
