"""The synchronous heart of the engine: capture blocks in, emotion estimates out.

:class:`StreamAnalyzer` chains the stages (mono mix -> streaming resampler -> speech detector ->
windower) and turns due windows into :class:`~streamser.engine.estimate.Estimate` objects with
the model, the affect mapping and the smoother. It owns no thread and no clock of its own, so
every step is testable sample-exactly; the worker thread merely drives it, and ``analyze`` drives
the very same object over files, which is what makes offline results equal live ones.

Stream clock: sample ``n`` of the 16 kHz stream is at ``n / 16000`` s. The resampler has no
delay against one-shot resampling, so this is the capture time of the sample relative to the
first captured frame. Frames the capture ring lost are replaced by zeros of the same length, so
a drop never shifts the clock.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from streamser.audio.resample import StreamingResampler
from streamser.audio.silence import SilenceWatch
from streamser.audio.sources import mix_to_mono
from streamser.audio.vad import SpeechDetector, is_speech
from streamser.audio.windows import Window, Windower
from streamser.config import WindowConfig
from streamser.constants import MAX_SAMPLE_ABS, NUM_CLASSES, SAMPLE_RATE_HZ
from streamser.contracts import MAIN_STREAM, AnalysisModel, Estimate, StreamSpec
from streamser.model.affect import AffectSmoother, arousal_of, valence_of
from streamser.model.preprocess import preprocess
from streamser.model.runtime import Prediction

log = logging.getLogger("streamser")

_NO_INPUTS = np.zeros((0, 0), dtype=np.float32)
_NO_LOGITS = np.zeros((0, NUM_CLASSES), dtype=np.float32)


@dataclass
class LevelMeter:
    """Peak level of the latest capture block in dBFS, and whether it clipped (|x| >= 0.999)."""

    level_dbfs: float | None = None
    clipped_blocks: int = 0
    clipping: bool = False

    def push(self, block: np.ndarray) -> None:
        if block.size == 0:
            return
        peak = float(np.max(np.abs(block)))
        if not math.isfinite(peak):
            return
        self.level_dbfs = 20.0 * math.log10(peak) if peak > 1e-10 else -200.0
        self.clipping = peak >= 0.999
        self.clipped_blocks += int(self.clipping)


@dataclass(frozen=True)
class PreparedWindows:
    """One stream's due windows, ready for the model: the first half of
    :meth:`StreamAnalyzer.estimate`, so that a driver can run the windows of every stream
    through the model in one batch and hand each stream its rows back."""

    windows: Sequence[Window]
    fractions: Sequence[float | None]
    speech: Sequence[bool]
    run: Sequence[bool]
    """Whether each window goes through the model (not a skipped non-speech window)."""
    inputs: np.ndarray
    """``(n_run, 48000)`` preprocessed model inputs, one per window that runs."""
    latency_from_s: Sequence[float]
    """The ``time.monotonic()`` each window's latency counts from."""


class StreamAnalyzer:
    """Feed capture blocks with :meth:`push_capture`; take due windows; turn them into estimates.

    ``in_rate_hz`` describes the capture stream (the source's native rate). ``stream`` says
    which of its channels this analyzer follows: the mono mix (the default) or one channel,
    so several analyzers over one capture ring each follow their own voice, each with its own
    resampler, speech detector, windows, smoothing and counters on the same stream clock.
    """

    def __init__(
        self,
        model: AnalysisModel,
        cfg: WindowConfig,
        in_rate_hz: int,
        vad: SpeechDetector | None = None,
        watch_silence: bool = True,
        *,
        stream: StreamSpec = MAIN_STREAM,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.stream = stream
        self.in_rate_hz = in_rate_hz
        self.resampler = StreamingResampler(in_rate_hz, SAMPLE_RATE_HZ)
        self.windower = Windower(cfg.hop_s, cfg.first_s, cfg.window_s, SAMPLE_RATE_HZ)
        self.vad = vad if cfg.vad else None
        self.smoother = AffectSmoother(cfg.smooth_s)
        # Digital silence from a microphone means muted or denied; in a file it is just silence.
        self.silence = SilenceWatch(in_rate_hz) if watch_silence else None
        self.level = LevelMeter()
        self.silence_warning: str | None = None
        """The silence watch's message while the input is digitally silent, else None: it
        clears as soon as a non-zero sample arrives and returns with the next silent run."""
        self.frames_in = 0
        """Capture frames consumed (native rate), zeros for lost frames included."""
        self.dropped_frames = 0
        """Capture frames lost before they reached the analyzer (replaced by zeros)."""
        self.gap_frames = 0
        """Capture frames judged lost by the wall-clock gap detector (not seen as ring drops)."""
        self.nonfinite_samples = 0
        """Unusable capture frames replaced by 0: NaN, infinite, or beyond ``MAX_SAMPLE_ABS``
        after the channel mix (``huge_samples`` counts the last kind apart)."""
        self.huge_samples = 0
        """Finite frames beyond ``MAX_SAMPLE_ABS`` (corrupt float data), within the above."""
        self._unusable_warned = False
        self._seq = itertools.count()
        self.estimates = 0
        """Estimates this stream produced."""
        self._finished = False

    @property
    def skipped_windows(self) -> int:
        """Due windows not computed because a newer one was due; the windower counts them."""
        return self.windower.windows_skipped

    def skip(self, windows: int) -> None:
        """Count due windows dropped by the caller (the live tail at the end of a stream)."""
        self.windower.windows_skipped += windows

    @property
    def dropped_samples(self) -> int:
        """Capture frames lost (ring overruns and gaps), in 16 kHz stream samples."""
        lost = self.dropped_frames + self.gap_frames
        return round(lost * SAMPLE_RATE_HZ / self.in_rate_hz)

    # -- audio in -----------------------------------------------------------------------

    def push_capture(self, first_frame: int, block: np.ndarray) -> None:
        """Consume capture frames starting at stream frame ``first_frame`` (native rate)."""
        if first_frame > self.frames_in:
            lost = first_frame - self.frames_in
            self.dropped_frames += lost
            self._push_mono(np.zeros(lost, dtype=np.float32))
        elif first_frame < self.frames_in:
            block = block[self.frames_in - first_frame :]
        with np.errstate(over="ignore", invalid="ignore"):  # huge channels mix to inf: counted
            mono = self._select(block)
        mono = self._zero_unusable(mono)
        self.level.push(mono)
        if self.silence is not None:
            # A run that started and ended inside this block still shows for one poll.
            fired = self.silence.push(mono)
            self.silence_warning = self.silence.message if fired or self.silence.silent else None
        self._push_mono(mono)

    def _select(self, block: np.ndarray) -> np.ndarray:
        """This stream's samples of a capture block: its channel, or the mix of all."""
        channel = self.stream.channel
        if channel is None or block.ndim == 1:
            return mix_to_mono(block)
        return block[:, channel].astype(np.float32, copy=False)

    def _zero_unusable(self, mono: np.ndarray) -> np.ndarray:
        """Replace NaN, infinite and huge (beyond ``MAX_SAMPLE_ABS``) samples by 0; count them,
        and say so once on stderr. A huge sample would overflow the window's normalisation and
        turn the whole window into the all-zero input."""
        bad = ~(np.abs(mono) <= MAX_SAMPLE_ABS)  # NaN compares False: caught too
        if not bad.any():
            return mono
        n_bad = int(bad.sum())
        n_huge = int(np.count_nonzero(bad & np.isfinite(mono)))
        self.nonfinite_samples += n_bad
        self.huge_samples += n_huge
        if not self._unusable_warned:
            self._unusable_warned = True
            log.warning(
                "the input holds unusable samples (NaN, infinite, or beyond +/-%g, where full "
                "scale is 1): each is replaced by 0 and counted (nonfinite_samples)",
                MAX_SAMPLE_ABS,
            )
        return np.where(bad, np.float32(0.0), mono)

    def _push_mono(self, mono: np.ndarray) -> None:
        self.frames_in += len(mono)
        self._push_16k(self.resampler.push(mono))

    def _push_16k(self, y: np.ndarray) -> None:
        if y.size == 0:
            return
        if self.vad is not None:
            self.vad.push(y)
        self.windower.push(y)

    def finish(self) -> list[Window]:
        """End of a finite stream: flush the resampler and return the windows that completes."""
        if self._finished:
            return []
        self._finished = True
        self._push_16k(self.resampler.flush())
        return self.windower.pop_due() + self.windower.finish()

    # -- windows out --------------------------------------------------------------------

    def due_all(self) -> list[Window]:
        """Every due window, in order (lossless replay and offline analysis)."""
        return self.windower.pop_due()

    def due_latest(self) -> Window | None:
        """The newest due window; older due ones are skipped and counted (live policy)."""
        window, _ = self.windower.pop_latest()
        return window

    def speech_fraction(self, window: Window) -> float | None:
        if self.vad is None:
            return None
        return self.vad.speech_fraction(window.start_sample, window.end_sample)

    def estimate(
        self,
        windows: Sequence[Window],
        capture_wall_s: Sequence[float | None] | None = None,
    ) -> list[Estimate]:
        """Run the model over ``windows`` (one batch) and build their estimates, in order.

        ``capture_wall_s[i]`` is the ``time.monotonic()`` at which window i's last sample was
        captured (None when there was no live capture: latency then counts from when the window
        became due, i.e. now).
        """
        if not windows:
            return []
        prepared = self.prepare(windows, capture_wall_s)
        t0 = time.perf_counter()
        logits = self.model.logits(prepared.inputs) if len(prepared.inputs) else _NO_LOGITS
        return self.complete(prepared, logits, time.perf_counter() - t0)

    def prepare(
        self,
        windows: Sequence[Window],
        capture_wall_s: Sequence[float | None] | None = None,
    ) -> PreparedWindows:
        """Gate and preprocess ``windows``: the model's inputs, with what their estimates need."""
        t_due = time.monotonic()
        fractions = [self.speech_fraction(w) for w in windows]
        speech = [f is None or is_speech(f, self.cfg.vad_threshold) for f in fractions]
        run = [s or not self.cfg.skip_non_speech for s in speech]
        inputs = [preprocess(w.samples) for w, r in zip(windows, run) if r]
        caps = capture_wall_s if capture_wall_s is not None else [None] * len(windows)
        return PreparedWindows(
            windows=windows,
            fractions=fractions,
            speech=speech,
            run=run,
            inputs=np.stack(inputs) if inputs else _NO_INPUTS,
            latency_from_s=[cap or t_due for cap in caps],
        )

    def complete(
        self, prepared: PreparedWindows, logits: np.ndarray, compute_s: float
    ) -> list[Estimate]:
        """The estimates of ``prepared``'s windows, given the model's ``logits`` for the ones
        that ran (in order) and ``compute_s``, the forward pass's time for all of them."""
        per_window_s = compute_s / max(1, len(prepared.inputs))
        now = time.monotonic()
        wall = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        out: list[Estimate] = []
        it = iter(logits)
        for i, w in enumerate(prepared.windows):
            pred = Prediction.from_logits(next(it)) if prepared.run[i] else None
            latency_s = now - prepared.latency_from_s[i]
            fraction, speech = prepared.fractions[i], prepared.speech[i]
            out.append(self._make(w, pred, fraction, speech, per_window_s, latency_s, wall))
        return out

    def _make(
        self,
        w: Window,
        pred: Prediction | None,
        fraction: float | None,
        speech: bool,
        compute_s: float,
        latency_s: float,
        wall: str,
    ) -> Estimate:
        arousal = valence = None
        if pred is not None:
            arousal, valence = arousal_of(pred.probs), valence_of(pred.probs)
            if speech:
                self.smoother.push(w.t_end_s, arousal, valence)
        est = Estimate(
            seq=next(self._seq),
            window=w.index,
            t_start_s=w.t_start_s,
            t_end_s=w.t_end_s,
            wall_time=wall,
            probs=tuple(float(p) for p in pred.probs) if pred is not None else None,
            arousal=arousal,
            valence=valence,
            arousal_smooth=self.smoother.arousal,
            valence_smooth=self.smoother.valence,
            speech=fraction,
            is_speech=speech,
            compute_s=compute_s if pred is not None else 0.0,
            latency_s=max(0.0, latency_s),
            skipped_windows=self.skipped_windows,
            dropped_samples=self.dropped_samples,
            stream=self.stream.name,
        )
        self.estimates += 1
        return est
