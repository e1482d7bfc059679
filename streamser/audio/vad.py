"""Speech gate: per-frame speech probabilities on the 16 kHz stream clock.

The model is silero-vad, whose pip package carries its weights, so the gate works offline.
At 16 kHz it scores chunks of exactly 512 samples and carries a recurrent state and a short
audio context from one chunk to the next. :class:`SpeechDetector` therefore cuts the stream
into frames aligned to the stream clock (frame ``i`` covers samples ``[512 i, 512 i + 512)``),
whatever block lengths arrive, and feeds them to the model in order. The same stream pushed in
different block sizes thus yields bit-identical probabilities, which is what lets an offline
analysis of a recording reproduce the live results.

Its cost per frame is small for one live stream but adds up over many streams or a fast
offline pass (benchmarks/README.md, "Stage costs").

The detector scores frames with one torch thread, whatever the process's thread count. Its
frames are far too small to gain from more, and a thread that has run torch work with several
threads keeps an OpenMP team of its own, whose threads go on spinning after each frame: on a
machine with few cores they take the cores from the emotion model's forward pass on the
executor's thread, which then runs more than twice as slowly (benchmarks/README.md, "Live latency
through the executor"). Scoring is bit-identical with one thread or several.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch

from streamser.constants import SAMPLE_RATE_HZ


class FrameModel(Protocol):
    """What the detector needs of a streaming VAD model: silero-vad's jit module fits it."""

    def __call__(self, x: torch.Tensor, sr: int) -> torch.Tensor:
        """Speech probability of one ``(1, 512)`` chunk, given the chunks before it."""
        ...

    def reset_states(self) -> None:
        """Forget the chunks seen so far."""
        ...


def load_silero_model() -> FrameModel:
    """Load silero-vad's jit model from its package, offline, leaving torch's settings alone.

    Importing ``silero_vad`` calls ``torch.set_num_threads(1)`` as a side effect, which would
    slow the emotion model sharing this process; the thread count is restored after the
    import. The package's loader emits DeprecationWarnings (``torch.jit.load`` on torch 2.13,
    ``importlib.resources.path``) that say nothing about our use: only those are silenced.
    """
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            for message in (r".*torch\.jit", r"path is deprecated"):
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            from silero_vad import load_silero_vad

            model: FrameModel = load_silero_vad()
    except Exception as e:
        raise RuntimeError("could not load the silero-vad model from its package") from e
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return model


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with torch on one thread in the calling thread, then give it back its
    count (torch's count is per thread: other threads, the model's among them, keep theirs)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def is_speech(fraction: float, threshold: float) -> bool:
    """Whether a window counts as speech: its speech fraction reaches ``threshold``."""
    return fraction >= threshold


class SpeechDetector:
    """Streaming speech detector: push stream samples, ask for the speech fraction of a span.

    A synchronous stage driven by one thread (the inference worker); it holds no lock.
    Buffers: a partial-frame buffer of ``FRAME_SAMPLES - 1`` samples at most (never drops),
    and a history of per-frame probabilities of ``history_frames`` frames whose policy is
    *evict oldest*, counted in :attr:`frames_evicted`. The trailing partial frame of a stream
    is never scored, because scoring it would need samples that have not arrived yet.
    """

    FRAME_SAMPLES = 512
    """32 ms at 16 kHz: the only chunk length silero-vad accepts at this rate."""

    def __init__(
        self,
        frame_threshold: float = 0.5,
        history_s: float = 30.0,
        *,
        model: FrameModel | None = None,
    ) -> None:
        """Create a detector; ``model`` replaces silero-vad (tests use light doubles)."""
        if not 0.0 <= frame_threshold <= 1.0:
            raise ValueError(f"frame_threshold must lie in [0, 1], got {frame_threshold}")
        if not history_s > 0.0:
            raise ValueError(f"history_s must be positive, got {history_s}")
        self.frame_threshold = frame_threshold
        self.history_frames = max(1, math.ceil(history_s * SAMPLE_RATE_HZ / self.FRAME_SAMPLES))
        self._model = model if model is not None else load_silero_model()
        self._frame = np.zeros(self.FRAME_SAMPLES, dtype=np.float32)
        self._probs = np.zeros(self.history_frames, dtype=np.float32)
        self._model.reset_states()
        self._fill = 0
        self.frames_processed = 0
        """Frames scored since the stream (or the last reset) began: the frame clock."""
        self.frames_evicted = 0
        """Frame probabilities pushed out of the bounded history."""
        self.nonfinite_samples = 0
        """NaN or infinite input samples replaced by 0 (one would poison the model's state)."""

    @property
    def samples_pushed(self) -> int:
        """Stream-clock position: samples pushed since the stream (or the last reset) began."""
        return self.frames_processed * self.FRAME_SAMPLES + self._fill

    @property
    def first_retained_frame(self) -> int:
        """Index of the oldest frame whose probability is still held."""
        return max(0, self.frames_processed - self.history_frames)

    def push(self, samples: np.ndarray) -> None:
        """Score every frame completed by ``samples`` (mono 16 kHz stream samples, in order)."""
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"expected a 1-D block of mono samples, got shape {block.shape}")
        if not np.isfinite(block).all():
            bad = ~np.isfinite(block)
            self.nonfinite_samples += int(bad.sum())
            block = np.where(bad, np.float32(0.0), block)
        pos = 0
        with torch.inference_mode(), one_torch_thread():
            while pos < block.size:
                take = min(block.size - pos, self.FRAME_SAMPLES - self._fill)
                self._frame[self._fill : self._fill + take] = block[pos : pos + take]
                self._fill += take
                pos += take
                if self._fill == self.FRAME_SAMPLES:
                    self._score_frame()

    def _score_frame(self) -> None:
        """Run the model on the full frame buffer and store its probability."""
        x = torch.from_numpy(self._frame.copy()).unsqueeze(0)
        prob = float(self._model(x, SAMPLE_RATE_HZ).reshape(-1)[0])
        if self.frames_processed >= self.history_frames:
            self.frames_evicted += 1
        self._probs[self.frames_processed % self.history_frames] = prob
        self.frames_processed += 1
        self._fill = 0

    def probabilities(self) -> np.ndarray:
        """Speech probabilities of the retained frames, oldest first (a copy).

        Entry ``k`` belongs to frame ``first_retained_frame + k``.
        """
        idx = np.arange(self.first_retained_frame, self.frames_processed)
        return self._probs[idx % self.history_frames].copy()

    def speech_fraction(self, start_sample: int, end_sample: int) -> float:
        """Fraction of ``[start_sample, end_sample)`` covered by speech frames.

        A frame that starts before the span counts by its overlap (it weighs as many samples
        as it shares with the span). A frame that ends after the span does not count: when a
        window falls due, the frame holding its last samples is scored or not depending on
        how the audio arrived in blocks, and judging the window without it makes its fraction
        the same live (small blocks) and offline (large ones), so re-analysing a recording
        reproduces the live run exactly. Only scored, retained frames count; the fraction is
        taken over the part of the span they cover, and is 0.0 when they cover none of it.
        A frame is speech when its probability is at least ``frame_threshold``.
        """
        fs = self.FRAME_SAMPLES
        first = max(start_sample // fs, self.first_retained_frame)
        stop = min(end_sample // fs, self.frames_processed)
        if end_sample <= start_sample or stop <= first:
            return 0.0
        idx = np.arange(first, stop, dtype=np.int64)
        lo = np.maximum(idx * fs, start_sample)
        hi = np.minimum(idx * fs + fs, end_sample)
        weights = hi - lo
        speech = self._probs[idx % self.history_frames] >= self.frame_threshold
        return float(weights[speech].sum() / weights.sum())

    def reset(self) -> None:
        """Start a new stream: clock, history, counters and the model's state go back to zero."""
        self._model.reset_states()
        self._fill = 0
        self.frames_processed = 0
        self.frames_evicted = 0
        self.nonfinite_samples = 0
