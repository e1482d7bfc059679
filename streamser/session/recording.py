"""A session's recording as one native-rate signal on the stream clock, for offline analysis.

The recorder writes segments named by their first frame; reassembled in order, with the frames
between segments (before recording started, during a mute) left as gaps that the analyzer
fills with zeros, the recording lines up with the live run's windows, so ``analyze SESSION``
reproduces the live estimates. The spans the segments cover are named
(:attr:`NativeAudio.recorded`), so that windows holding no recorded audio at all can be left
out and those holding only some of it marked (:func:`window_coverage`).
"""

from __future__ import annotations

from pathlib import Path

from streamser.audio.native import Blocks, NativeAudio, read_audio_file
from streamser.constants import SAMPLE_RATE_HZ
from streamser.session.errors import SessionError
from streamser.session.reader import is_session_dir
from streamser.session.recorder import RecordedSegment, list_recording_segments

UNRECORDED, PARTLY, RECORDED = "unrecorded", "partly", "recorded"
"""What :func:`window_coverage` says of a window."""


def recording_audio(session_dir: Path) -> NativeAudio:
    """The session's recorded audio; SessionError when it recorded none, or when its segments
    disagree on the sample rate or the channel count."""
    segments = list_recording_segments(session_dir)
    if not segments:
        raise SessionError(f"session {session_dir.name} has no recorded audio to analyse")
    if len({(s.sample_rate_hz, s.channels) for s in segments}) != 1:
        raise SessionError(
            f"audio segments of session {session_dir.name} disagree on sample rate or channels"
        )

    def blocks() -> Blocks:
        for seg in segments:
            yield seg.start_frame, seg.read()

    return NativeAudio(
        segments[0].sample_rate_hz,
        max(s.end_frame for s in segments),
        blocks,
        recorded=recorded_spans(segments),
        channels=segments[0].channels,
    )


def recorded_spans(segments: list[RecordedSegment]) -> tuple[tuple[int, int], ...]:
    """The ``[start, end)`` native-frame spans the segments cover, merged where they touch."""
    spans: list[tuple[int, int]] = []
    for seg in sorted(segments, key=lambda s: s.start_frame):
        if spans and seg.start_frame <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], seg.end_frame))
        else:
            spans.append((seg.start_frame, seg.end_frame))
    return tuple(spans)


def window_coverage(audio: NativeAudio, t_start_s: float, t_end_s: float) -> str:
    """How much of the window ``[t_start_s, t_end_s)`` (stream clock) is recorded audio:
    :data:`RECORDED` (all of it), :data:`PARTLY` or :data:`UNRECORDED` (none).

    Exact in integers: the window's ends are whole 16 kHz samples, the spans whole native
    frames; both are compared in units of 1 / (16000 * rate) s. A difference of less than one
    sample of either clock (where the resampled stream's length rounds) does not count.
    """
    if audio.recorded is None:
        return RECORDED
    rate = audio.sample_rate_hz
    start = round(t_start_s * SAMPLE_RATE_HZ) * rate
    end = round(t_end_s * SAMPLE_RATE_HZ) * rate
    slack = max(SAMPLE_RATE_HZ, rate)
    covered = sum(
        max(0, min(end, b * SAMPLE_RATE_HZ) - max(start, a * SAMPLE_RATE_HZ))
        for a, b in audio.recorded
    )
    if covered > 0 and covered >= end - start - slack:
        return RECORDED
    return UNRECORDED if covered <= slack else PARTLY


def open_native_audio(path: Path) -> NativeAudio:
    """A session directory's recording, or an audio file; errors are one line."""
    return recording_audio(path) if is_session_dir(path) else read_audio_file(path)
