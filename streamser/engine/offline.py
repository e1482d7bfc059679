"""Offline analysis: the live analyzer's stages driven over a recording at full speed.

Two ways, with the same results:

* :func:`analyze_audio` drives the very :class:`StreamAnalyzer` the live worker drives, model
  included, fed the same native-rate frames, in lossless mode (one process, file after file);
* :func:`prepare_audio` runs the same analyzer's stages without the model (mix or channel,
  resampler, speech gate, windows: the part that decodes and scales with the audio, so it can
  run in worker processes ahead of the model) and keeps each stream's 16 kHz signal and its
  windows' facts; :func:`build_estimates` then turns the model's logits for those windows into
  the estimates :meth:`StreamAnalyzer.estimate` would have made (same smoothing, same counters).

Block sizes differ from a live run, but every stage is block-size invariant, so a recording
analysed here gives the windows and probabilities the live run gave (batching moves fp32
logits by ~1e-6). With ``--per-channel`` each stream is fed its own channel alone, exactly as
if that channel were a mono file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone

import numpy as np

from streamser.audio.native import Blocks, NativeAudio
from streamser.audio.vad import SpeechDetector, is_speech
from streamser.audio.windows import Window, Windower
from streamser.config import WindowConfig
from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import (
    MAIN_STREAM,
    AnalysisModel,
    ComputeInfo,
    Estimate,
    ModelInfo,
    StreamSpec,
)
from streamser.engine.analyzer import StreamAnalyzer
from streamser.model.affect import AffectSmoother, arousal_of, valence_of
from streamser.model.preprocess import preprocess
from streamser.model.runtime import Prediction


def analyze_audio(
    model: AnalysisModel,
    cfg: WindowConfig,
    audio: NativeAudio,
    *,
    batch: int = 8,
    progress: Callable[[int], None] | None = None,
    keep: Callable[[Window], bool] | None = None,
    stream: StreamSpec = MAIN_STREAM,
) -> Iterator[Estimate]:
    """Every window of ``audio``'s ``stream`` as an estimate, in order; ``progress`` gets frames
    consumed.

    ``keep``, when given, picks the windows to compute: the others never reach the model or
    the smoothing (a session's windows that hold no recorded audio).
    """
    vad = SpeechDetector() if cfg.vad else None
    analyzer = StreamAnalyzer(model, cfg, audio.sample_rate_hz, vad, watch_silence=False)
    pending: list[Window] = []

    def named(estimates: list[Estimate]) -> list[Estimate]:
        if stream.name == MAIN_STREAM.name:
            return estimates
        return [dataclasses.replace(e, stream=stream.name) for e in estimates]

    for first, block in _stream_blocks(audio.open_blocks(), stream):
        analyzer.push_capture(first, block)
        if progress is not None:
            progress(len(block))
        pending += _kept(analyzer.due_all(), keep)
        while len(pending) >= batch:
            yield from named(analyzer.estimate(pending[:batch]))
            pending = pending[batch:]
    pending += _kept(analyzer.finish(), keep)
    for i in range(0, len(pending), batch):
        yield from named(analyzer.estimate(pending[i : i + batch]))


def _kept(windows: list[Window], keep: Callable[[Window], bool] | None) -> list[Window]:
    return windows if keep is None else [w for w in windows if keep(w)]


def _stream_blocks(blocks: Blocks, stream: StreamSpec) -> Blocks:
    """The recording's blocks as ``stream`` sees them: every channel (the analyzer mixes them),
    or its one channel alone, as a mono file of that channel would read."""
    for first, block in blocks:
        yield (
            first,
            block if stream.channel is None else block[:, stream.channel : stream.channel + 1],
        )


# ----------------------------------------------------------------------------- ahead of the model


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedStream:
    """One stream of a recording, cut into windows ahead of the model.

    ``signal`` is the stream's whole 16 kHz signal (the windows are slices of it: keeping it
    rather than each window's copy takes a third of the memory at the default hop); the arrays
    hold one entry per window to estimate, in order. Picklable, so a worker process can hand
    it to the process that runs the model.
    """

    spec: StreamSpec
    signal: np.ndarray
    index: np.ndarray
    start_sample: np.ndarray
    end_sample: np.ndarray
    speech: np.ndarray
    """Speech fraction per window; NaN without the speech gate (the estimate's ``None``)."""
    is_speech: np.ndarray
    run: np.ndarray
    """Whether the window goes through the model (not a skipped non-speech window)."""
    dropped_samples: np.ndarray
    """The stream's lost samples (a session's unrecorded gaps) when the window fell due."""
    left_out: int = 0
    """Windows ``keep`` left out (they never reach the model or the smoothing)."""

    @property
    def windows(self) -> int:
        return len(self.index)

    @property
    def runs(self) -> int:
        """Windows that need the model."""
        return int(self.run.sum())

    def inputs(self, first: int, stop: int) -> np.ndarray:
        """``(n, 48000)`` model inputs of the windows ``[first, stop)`` that run, in order."""
        rows = [
            preprocess(self.signal[self.start_sample[i] : self.end_sample[i]])
            for i in range(first, stop)
            if self.run[i]
        ]
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def t_start_s(self, i: int) -> float:
        return int(self.start_sample[i]) / SAMPLE_RATE_HZ

    def t_end_s(self, i: int) -> float:
        return int(self.end_sample[i]) / SAMPLE_RATE_HZ


class _NoModel:
    """The model of an analyzer that only prepares windows: never asked for logits."""

    info = ModelInfo.random_weights("none: windows prepared ahead of the model", "none", 0)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError("windows prepared ahead of the model are estimated elsewhere")

    def compute_info(self) -> ComputeInfo:
        raise RuntimeError("no model here")


class _SignalKeepingWindower(Windower):
    """A :class:`Windower` that also keeps every sample pushed: the stream's 16 kHz signal,
    exactly as the windows were cut from it."""

    def __init__(self, cfg: WindowConfig) -> None:
        super().__init__(cfg.hop_s, cfg.first_s, cfg.window_s, SAMPLE_RATE_HZ)
        self.pushed: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        super().push(samples)
        self.pushed.append(np.array(samples, dtype=np.float32, copy=True))

    def signal(self) -> np.ndarray:
        return np.concatenate(self.pushed) if self.pushed else np.zeros(0, dtype=np.float32)


class _StreamPreparer:
    """One stream's analyzer without the model, collecting its windows' facts."""

    def __init__(
        self,
        cfg: WindowConfig,
        spec: StreamSpec,
        rate_hz: int,
        keep: Callable[[Window], bool] | None,
    ) -> None:
        self.cfg, self.spec, self.keep = cfg, spec, keep
        vad = SpeechDetector() if cfg.vad else None
        self.analyzer = StreamAnalyzer(_NoModel(), cfg, rate_hz, vad, watch_silence=False)
        self.windower = _SignalKeepingWindower(cfg)
        self.analyzer.windower = self.windower  # same geometry; it also keeps the signal
        self.rows: list[tuple[int, int, int, float, bool, bool, int]] = []
        self.waiting: list[Window] = []
        """Windows due, waiting for the speech detector to score their last frame."""
        self.left_out = 0

    def push(self, first: int, block: np.ndarray) -> None:
        self.analyzer.push_capture(first, block)
        self.waiting += self.analyzer.due_all()
        self._settle(final=False)

    def finish(self) -> PreparedStream:
        self.waiting += self.analyzer.finish()
        self._settle(final=True)
        cols = list(zip(*self.rows)) if self.rows else [()] * 7
        return PreparedStream(
            spec=self.spec,
            signal=self.windower.signal(),
            index=np.array(cols[0], dtype=np.int64),
            start_sample=np.array(cols[1], dtype=np.int64),
            end_sample=np.array(cols[2], dtype=np.int64),
            speech=np.array(cols[3], dtype=np.float64),
            is_speech=np.array(cols[4], dtype=bool),
            run=np.array(cols[5], dtype=bool),
            dropped_samples=np.array(cols[6], dtype=np.int64),
            left_out=self.left_out,
        )

    def _settle(self, final: bool) -> None:
        """Judge the waiting windows whose speech frames are all scored: a window falls due
        with its last samples, but the speech detector scores whole 32 ms frames, so the frame
        holding a window's last sample is scored only once the stream has reached that frame's
        end (or has ended). Judged then, a window's speech fraction covers all of its samples,
        whatever the block sizes, the batch, or the moment the window fell due."""
        vad = self.analyzer.vad
        scored = vad.frames_processed * vad.FRAME_SAMPLES if vad is not None else None
        while self.waiting:
            w = self.waiting[0]
            if not final and scored is not None and scored < w.end_sample:
                return
            self.waiting.pop(0)
            self._judge(w)

    def _judge(self, w: Window) -> None:
        if self.keep is not None and not self.keep(w):
            self.left_out += 1
            return
        fraction = self.analyzer.speech_fraction(w)
        speech = fraction is None or is_speech(fraction, self.cfg.vad_threshold)
        run = speech or not self.cfg.skip_non_speech
        speech_value = np.nan if fraction is None else fraction
        dropped = self.analyzer.dropped_samples
        self.rows.append(
            (w.index, w.start_sample, w.end_sample, speech_value, speech, run, dropped)
        )


def prepare_audio(
    cfg: WindowConfig,
    audio: NativeAudio,
    streams: Sequence[StreamSpec] = (MAIN_STREAM,),
    *,
    keep: Callable[[Window], bool] | None = None,
) -> list[PreparedStream]:
    """Decode ``audio`` once and cut each of ``streams`` into windows, ahead of the model.

    Each stream has its own resampler, speech detector and windows; ``keep`` as in
    :func:`analyze_audio`. Errors of the decoder propagate (the caller skips the file).
    """
    preparers = [_StreamPreparer(cfg, s, audio.sample_rate_hz, keep) for s in streams]
    for first, block in audio.open_blocks():
        for p in preparers:
            channel = p.spec.channel
            p.push(first, block if channel is None else block[:, channel : channel + 1])
    return [p.finish() for p in preparers]


def build_estimates(
    stream: PreparedStream,
    logits: np.ndarray,
    cfg: WindowConfig,
    *,
    compute_s: float = 0.0,
    latency_s: float = 0.0,
) -> list[Estimate]:
    """The estimates of ``stream``'s windows, given the model's ``logits`` for those that run
    (in order): what :meth:`StreamAnalyzer.estimate` makes of the same windows, smoothing and
    running counters included. ``compute_s`` is the forward time per window, ``latency_s`` the
    wait for the model."""
    if len(logits) != stream.runs:
        raise ValueError(f"{len(logits)} logits for {stream.runs} windows that run")
    smoother = AffectSmoother(cfg.smooth_s)
    wall = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    rows = iter(logits)
    out: list[Estimate] = []
    for i in range(stream.windows):
        pred = Prediction.from_logits(next(rows)) if stream.run[i] else None
        speech = bool(stream.is_speech[i])
        arousal = valence = None
        if pred is not None:
            arousal, valence = arousal_of(pred.probs), valence_of(pred.probs)
            if speech:
                smoother.push(stream.t_end_s(i), arousal, valence)
        fraction = float(stream.speech[i])
        out.append(
            Estimate(
                seq=i,
                window=int(stream.index[i]),
                t_start_s=stream.t_start_s(i),
                t_end_s=stream.t_end_s(i),
                wall_time=wall,
                probs=tuple(float(p) for p in pred.probs) if pred is not None else None,
                arousal=arousal,
                valence=valence,
                arousal_smooth=smoother.arousal,
                valence_smooth=smoother.valence,
                speech=None if np.isnan(fraction) else fraction,
                is_speech=speech,
                compute_s=compute_s if pred is not None else 0.0,
                latency_s=latency_s,
                skipped_windows=0,
                dropped_samples=int(stream.dropped_samples[i]),
                stream=stream.spec.name,
            )
        )
    return out
