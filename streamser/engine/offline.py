"""Offline analysis: the live analyzer driven over a recording at full speed.

It is the same :class:`StreamAnalyzer` the live worker drives, fed the same native-rate frames,
in lossless mode: the same resampler, speech gate, windows and smoothing. Block sizes differ
from a live run, but every stage is block-size invariant, so a recording analysed here gives
the windows and probabilities the live run gave (batching moves fp32 logits by ~1e-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from streamser.audio.native import NativeAudio
from streamser.audio.vad import SpeechDetector
from streamser.audio.windows import Window
from streamser.config import WindowConfig
from streamser.contracts import AnalysisModel, Estimate
from streamser.engine.analyzer import StreamAnalyzer


def analyze_audio(
    model: AnalysisModel,
    cfg: WindowConfig,
    audio: NativeAudio,
    *,
    batch: int = 8,
    progress: Callable[[int], None] | None = None,
    keep: Callable[[Window], bool] | None = None,
) -> Iterator[Estimate]:
    """Every window of ``audio`` as an estimate, in order; ``progress`` gets frames consumed.

    ``keep``, when given, picks the windows to compute: the others never reach the model or
    the smoothing (a session's windows that hold no recorded audio).
    """
    vad = SpeechDetector() if cfg.vad else None
    analyzer = StreamAnalyzer(model, cfg, audio.sample_rate_hz, vad, watch_silence=False)
    pending: list[Window] = []
    for first, block in audio.open_blocks():
        analyzer.push_capture(first, block)
        if progress is not None:
            progress(len(block))
        pending += _kept(analyzer.due_all(), keep)
        while len(pending) >= batch:
            yield from analyzer.estimate(pending[:batch])
            pending = pending[batch:]
    pending += _kept(analyzer.finish(), keep)
    for i in range(0, len(pending), batch):
        yield from analyzer.estimate(pending[i : i + batch])


def _kept(windows: list[Window], keep: Callable[[Window], bool] | None) -> list[Window]:
    return windows if keep is None else [w for w in windows if keep(w)]
