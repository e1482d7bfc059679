"""Wires a source, the capture ring, the inference worker, the result bus and the session.

``Pipeline`` is what ``listen`` runs headless and what the dashboard drives (it implements the
dashboard's controller protocol). Start and stop are idempotent, it is a context manager, and
shutdown is ordered so nothing computed is lost: the source stops first (closing the ring), the
worker finishes its current window, the bus drains every lossless subscriber (the session log
among them), and only then is the session closed with its counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamser.audio.ring import RingBuffer, RingReader
from streamser.audio.sources import AudioSource, MicSource
from streamser.audio.vad import SpeechDetector
from streamser.config import ListenConfig
from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import AnalysisModel, Estimate, StatusSnapshot
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.bus import ResultBus
from streamser.engine.worker import InferenceWorker
from streamser.model.demo import DEMO_BANNER
from streamser.version import __version__

log = logging.getLogger("streamser")

RECORDING_SEGMENT_S = 60.0
"""One WAV per minute: every block already updates its header, so a crash loses nothing
written; longer segments keep meta.json's segment list short (60 entries an hour)."""
RETRY_S = 3.0
"""How often a lost input device is looked for again."""
POLL_S = 0.2
SUPERVISOR_JOIN_S = 5.0
HISTORY_MAX = 20_000
"""Estimates kept in memory for the dashboard: over 10 minutes at the smallest hop (0.05 s)."""
TAP_POLL_S = 0.1


class RecorderTap:
    """A second reader of the capture ring that feeds the audio recorder on its own thread.

    It always drains its reader (so a lossless ring never waits on it) and writes only while
    recording and not muted, so a mute leaves a gap in the recording, never audio.
    """

    def __init__(
        self,
        ring: RingBuffer,
        reader: RingReader,
        recorder: Any,
        is_muted: Callable[[], bool],
        awaits_reconnect: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ring, self.reader, self.recorder, self.is_muted = ring, reader, recorder, is_muted
        self.awaits_reconnect = awaits_reconnect
        self.frame_offset = 0
        self._rebound = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        """Continue from a reconnected device's ring; the gap becomes a new segment."""
        self.ring, self.reader, self.frame_offset = ring, reader, frame_offset
        self._rebound.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.reader.wait(TAP_POLL_S)
            self._drain()
            if self.ring.closed and self.reader.available() == 0:
                if not self.awaits_reconnect():
                    return
                self._rebound.wait(TAP_POLL_S)
                self._rebound.clear()

    def _drain(self) -> None:
        first, block = self.reader.read_new()
        if len(block) and not self.is_muted():
            self.recorder.write(self.frame_offset + first, block)


class Pipeline:
    """A live (or file-replay) analysis run: source -> ring -> worker -> bus -> consumers."""

    is_replay = False

    def __init__(
        self,
        cfg: ListenConfig,
        model: AnalysisModel,
        source: AudioSource,
        *,
        vad: SpeechDetector | None = None,
        sessions_root: Path | None = None,
        max_batch: int = 8,
        log_opener: Callable[..., Any] | None = None,
        source_factory: Callable[[], AudioSource] | None = None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.source = source
        self.sessions_root = sessions_root
        self._log_opener = log_opener
        self._source_factory = source_factory if cfg.audio.reconnect else None
        """Makes a replacement for a lost device; None: a lost device ends the run."""
        self.source_error_text: str | None = None
        self.reconnects = 0
        self._supervisor: threading.Thread | None = None
        self._stop_supervisor = threading.Event()
        self.bus: ResultBus[Estimate] = ResultBus(on_failure=self._on_consumer_failure)
        if cfg.windows.vad and vad is None:
            vad = SpeechDetector()
        self.analyzer = StreamAnalyzer(
            model,
            cfg.windows,
            source.sample_rate_hz,
            vad,
            watch_silence=isinstance(source, MicSource),
        )
        capacity = max(1, round(cfg.audio.ring_s * source.sample_rate_hz))
        self.ring = RingBuffer(capacity, source.channels, policy=source.ring_policy())
        self.worker = InferenceWorker(
            self.analyzer,
            self.ring,
            self.ring.reader("analyzer"),
            self.bus.publish,
            lossless=not source.realtime,
            max_batch=max_batch if not source.realtime else 1,
            is_muted=lambda: self._muted,
            awaits_reconnect=self._awaits_reconnect,
        )
        self.logger: Any = None
        self.recorder: Any = None
        self._tap: RecorderTap | None = None
        self._history: deque[Estimate] = deque(maxlen=HISTORY_MAX)
        self._history_lock = threading.Lock()
        self.bus.subscribe_callback("history", self._remember)
        self._muted = False
        self._mutes: list[dict[str, float | None]] = []
        self.log_error: str | None = None
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
        """Open the session, attach the consumers, start the worker and then the source."""
        with self._lifecycle:
            if self._started:
                return
            self._started = True
            if self.cfg.logging.log:
                self._open_session()
            self.worker.start()
            self.source.start(self.ring)
            if self._source_factory is not None:
                self._supervisor = threading.Thread(
                    target=self._supervise, name="streamser-reconnect", daemon=True
                )
                self._supervisor.start()

    def stop(self) -> None:
        """Ordered, idempotent shutdown; the session is closed with all counters."""
        with self._lifecycle:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
            self._stop_supervisor.set()
            if self._supervisor is not None:
                self._supervisor.join(SUPERVISOR_JOIN_S)
            self.source.stop()
            self.ring.close()
            self.worker.stop()
            if self._tap is not None:
                self._tap.stop()
            if self.recorder is not None:
                self.recorder.stop()
            self.bus.close()
            if self.logger is not None:
                self.logger.update_meta(mutes=self._mutes_closed())
                self.logger.close(self.counters())

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until a finite source has been fully analysed (or the worker failed)."""
        return self.worker.finished.wait(timeout_s)

    # -- session ------------------------------------------------------------------------

    def _open_session(self) -> None:
        from streamser.session.errors import SessionError
        from streamser.session.logger import SessionLogger, default_sessions_root
        from streamser.session.recorder import AudioRecorder

        root = self.sessions_root or (
            Path(self.cfg.logging.log_dir) if self.cfg.logging.log_dir else default_sessions_root()
        )
        extra = {"opener": self._log_opener} if self._log_opener is not None else {}
        try:
            self.logger = SessionLogger(
                root, self.session_meta(), on_failure=self._on_log_failure, **extra
            )
        except SessionError as e:
            # Analysis is still worth having; the user is told, and the dashboard shows it.
            self._on_log_failure(str(e))
            return
        self.bus.subscribe_lossless("session-log", self.logger.write_estimate)
        self.recorder = AudioRecorder(
            self.logger.path,
            self.source.sample_rate_hz,
            self.source.channels,
            segment_s=RECORDING_SEGMENT_S,
            on_failure=self._on_log_failure,
            on_segments=lambda segs: self.logger.update_meta(audio_segments=segs),
        )
        self._tap = RecorderTap(
            self.ring,
            self.ring.reader("recorder"),
            self.recorder,
            lambda: self._muted,
            self._awaits_reconnect,
        )
        self._tap.start()
        if self.cfg.logging.record:
            self.recorder.start(self.ring.frames_written)

    def session_meta(self) -> dict[str, Any]:
        info, compute = self.model.info, self.model.compute_info()
        return {
            "streamser_version": __version__,
            "model": {
                "name": info.name,
                "kind": info.kind,
                "revision": info.revision,
                "sha256": info.sha256,
                "sha256_status": info.sha256_status,
                "demo": info.demo,
                "n_params": info.n_params,
                **({"note": DEMO_BANNER} if info.demo else {}),
            },
            "compute": {
                "device": compute.device,
                "dtype": compute.dtype,
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
            "config": self.cfg.to_dict(),
        }

    def counters(self) -> dict[str, Any]:
        """Every counter of the run, for meta.json and the end-of-run summary."""
        a, w = self.analyzer, self.worker
        return {
            "estimates": w.estimates,
            "windows_due": a.windower.windows_emitted + a.windower.windows_skipped,
            "skipped_windows": a.skipped_windows,
            "muted_windows": w.muted_windows,
            "dropped_samples": a.dropped_frames + a.gap_frames,
            "ring_dropped_frames": a.dropped_frames,
            "gap_frames": a.gap_frames,
            "nonfinite_samples": a.nonfinite_samples,
            "frames_in": a.frames_in,
            "stream_s": a.windower.samples_total / SAMPLE_RATE_HZ,
            "compute_s_total": round(w.compute_s_total, 4),
            "fp16_fallbacks": self.model.compute_info().fallbacks,
            "consumer_failures": list(self.consumer_failures),
            "bus": self.bus.stats(),
            "source_status_flags": getattr(self.source, "status_flags", 0),
            "reconnects": self.reconnects,
            "source_error": str(self.source.error) if self.source.error is not None else None,
            "vad_frames_evicted": getattr(a.vad, "frames_evicted", 0),
        }

    # -- controller protocol (the dashboard) --------------------------------------------

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        self.bus.subscribe_callback(f"subscriber-{id(fn)}", fn)

    def history(self) -> list[Estimate]:
        with self._history_lock:
            return list(self._history)

    def _remember(self, est: Estimate) -> None:
        with self._history_lock:
            self._history.append(est)

    def stream_time_s(self) -> float:
        return self.analyzer.windower.samples_total / SAMPLE_RATE_HZ

    def set_muted(self, muted: bool) -> None:
        if muted == self._muted:
            return
        t = self.stream_time_s()
        if muted:
            self._mutes.append({"t_start_s": t, "t_end_s": None})
        elif self._mutes:
            self._mutes[-1]["t_end_s"] = t
        self._muted = muted
        if self.logger is not None:
            self.logger.update_meta(mutes=list(self._mutes))

    def _mutes_closed(self) -> list[dict[str, float | None]]:
        t = self.stream_time_s()
        return [
            {**m, "t_end_s": m["t_end_s"] if m["t_end_s"] is not None else t} for m in self._mutes
        ]

    @property
    def muted(self) -> bool:
        return self._muted

    def set_recording(self, on: bool) -> None:
        if self.recorder is None:
            log.warning("recording needs a session: run without --no-log")
            return
        if on:
            self.recorder.start(self.ring.frames_written)
        else:
            self.recorder.stop()

    def add_mark(self, note: str) -> None:
        if self.logger is None:
            log.warning("marks need a session: run without --no-log")
            return
        self.logger.add_mark(self.stream_time_s(), note)

    def status(self) -> StatusSnapshot:
        w, a = self.worker, self.analyzer
        rtf = w.last_compute_s / self.cfg.windows.hop_s if w.last_compute_s else None
        source_error = self.source_error_text or getattr(self.source, "error", None)
        compute = self.model.compute_info()
        return StatusSnapshot(
            device=self.source.description,
            sample_rate_hz=self.source.sample_rate_hz,
            model_name=self.model.info.name,
            demo_model=self.model.info.demo,
            compute_device=compute.device,
            dtype=compute.dtype,
            hop_s=self.cfg.windows.hop_s,
            rtf=rtf,
            latency_s=w.last_latency_s,
            skipped_windows=a.skipped_windows,
            dropped_samples=a.dropped_frames + a.gap_frames,
            recording=bool(self.recorder is not None and self.recorder.recording),
            muted=self._muted,
            logging=self.logger is not None and self.log_error is None,
            log_error=self.log_error,
            session_path=str(self.logger.path) if self.logger is not None else None,
            level_dbfs=a.level.level_dbfs,
            clipping=a.level.clipping,
            silence_warning=a.silence_warning,
            source_error=str(source_error) if source_error is not None else None,
            finished=self.worker.finished.is_set(),
        )

    # -- device loss ----------------------------------------------------------------------

    def _awaits_reconnect(self) -> bool:
        return (
            self._source_factory is not None and not self._stopped and self.source.error is not None
        )

    def _supervise(self) -> None:
        """Watch the live source; when it fails, retry a replacement every RETRY_S seconds."""
        while not self._stop_supervisor.is_set():
            if not self.source.finished.wait(POLL_S) or self.source.error is None:
                continue
            self._reconnect(time.monotonic())

    def _reconnect(self, lost_at: float) -> None:
        lost = self.source
        self.source_error_text = f"{lost.error}; retrying every {RETRY_S:g} s"
        log.warning("input lost: %s", self.source_error_text)
        lost.stop()
        while not self._stop_supervisor.wait(RETRY_S):
            try:
                new = self._source_factory()  # type: ignore[misc]
            except Exception as e:  # the device is still gone: keep trying
                log.debug("reconnect attempt failed: %s", e)
                continue
            if (new.sample_rate_hz, new.channels) != (lost.sample_rate_hz, lost.channels):
                new.stop()
                continue
            old_ring = self.ring
            ring = RingBuffer(old_ring.capacity_frames, new.channels, policy=new.ring_policy())
            reader = ring.reader("analyzer")
            tap_reader = ring.reader("recorder") if self._tap is not None else None
            try:
                new.start(ring)  # frames wait in the new ring until the worker is rebound
            except Exception as e:
                log.debug("reconnected device failed to start: %s", e)
                new.stop()
                continue
            gap = round((time.monotonic() - lost_at) * new.sample_rate_hz)
            offset = self.worker.frame_offset + old_ring.frames_written + gap
            self.ring, self.source = ring, new
            self.worker.rebind(ring, reader, offset)
            if self._tap is not None and tap_reader is not None:
                self._tap.rebind(ring, tap_reader, offset)
            self.reconnects += 1
            self.source_error_text = None
            log.warning("input back after %.1f s: %s", time.monotonic() - lost_at, new.description)
            return

    # -- failures -----------------------------------------------------------------------

    def _on_log_failure(self, reason: str) -> None:
        if self.log_error is None:
            self.log_error = f"logging stopped: {reason}"
            log.error("%s (live analysis goes on; what was written is intact)", self.log_error)

    def _on_consumer_failure(self, name: str, exc: BaseException) -> None:
        self.consumer_failures.append(f"{name}: {type(exc).__name__}: {exc}")
        log.error("estimate consumer %r detached: %s", name, exc)
