"""A session's recording as one native-rate signal on the stream clock, for offline analysis.

The recorder writes segments named by their first frame; reassembled in order, with the frames
between segments (before recording started, during a mute) left as gaps that the analyzer
fills with zeros, the recording lines up with the live run's windows, so ``analyze SESSION``
reproduces the live estimates.
"""

from __future__ import annotations

from pathlib import Path

from streamser.audio.native import Blocks, NativeAudio, read_audio_file
from streamser.session.errors import SessionError
from streamser.session.reader import is_session_dir
from streamser.session.recorder import list_recording_segments


def recording_audio(session_dir: Path) -> NativeAudio:
    """The session's recorded audio; SessionError when it recorded none."""
    segments = list_recording_segments(session_dir)
    if not segments:
        raise SessionError(f"session {session_dir.name} has no recorded audio to analyse")

    def blocks() -> Blocks:
        for seg in segments:
            yield seg.start_frame, seg.read()

    return NativeAudio(segments[0].sample_rate_hz, segments[-1].end_frame, blocks)


def open_native_audio(path: Path) -> NativeAudio:
    """A session directory's recording, or an audio file; errors are one line."""
    return recording_audio(path) if is_session_dir(path) else read_audio_file(path)
