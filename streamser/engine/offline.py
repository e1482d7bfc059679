"""Offline analysis: the live analyzer driven over a file (or a session's recording) at full speed.

It is the same :class:`StreamAnalyzer` the live worker drives, fed the same native-rate frames,
in lossless mode: the same resampler, speech gate, windows and smoothing. Block sizes differ
from a live run, but every stage is block-size invariant, so a recording analysed here gives
the windows and probabilities the live run gave (batching changes logits by ~1e-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from streamser.audio.sources import FileSource
from streamser.audio.vad import SpeechDetector
from streamser.config import WindowConfig
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.estimate import Estimate
from streamser.model.runtime import EmotionModel

READ_BLOCK_S = 1.0


def native_blocks(path: Path) -> tuple[int, int, Iterator[tuple[int, np.ndarray]]]:
    """(rate, frames, iterator of (first frame, (n, ch) block)) for a file or a session.

    A session directory yields its recording reassembled on the stream clock (gaps as zeros).
    """
    from streamser.session.reader import is_session_dir

    if is_session_dir(path):
        from streamser.session.errors import SessionError
        from streamser.session.recorder import list_recording_segments

        segments = list_recording_segments(path)
        if not segments:
            raise SessionError(f"session {path.name} has no recorded audio to analyse")
        rate = segments[0].sample_rate_hz
        total = segments[-1].end_frame

        def from_segments() -> Iterator[tuple[int, np.ndarray]]:
            for seg in segments:
                yield seg.start_frame, seg.read()

        return rate, total, from_segments()
    source = FileSource(path, realtime=False)  # validates: one-line SourceError when unreadable
    block_frames = max(1, round(READ_BLOCK_S * source.sample_rate_hz))

    def from_file() -> Iterator[tuple[int, np.ndarray]]:
        import soundfile as sf

        first = 0
        with sf.SoundFile(path) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                yield first, block
                first += len(block)

    return source.sample_rate_hz, source.total_frames, from_file()


def analyze_path(
    model: EmotionModel,
    cfg: WindowConfig,
    path: Path,
    *,
    batch: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Estimate]:
    """Every window of ``path`` as an estimate, in order; ``progress`` gets frames consumed."""
    rate, _, blocks = native_blocks(path)
    vad = SpeechDetector() if cfg.vad else None
    analyzer = StreamAnalyzer(model, cfg, rate, vad, watch_silence=False)
    pending: list = []
    for first, block in blocks:
        analyzer.push_capture(first, block)
        if progress is not None:
            progress(len(block))
        pending += analyzer.due_all()
        while len(pending) >= batch:
            yield from analyzer.estimate(pending[:batch])
            pending = pending[batch:]
    pending += analyzer.finish()
    for i in range(0, len(pending), batch):
        yield from analyzer.estimate(pending[i : i + batch])
