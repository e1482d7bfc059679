"""A session's recording as one WAV file on the stream clock, for annotation tools to play.

The recorder keeps the audio in one-minute float segments named by their first frame (see
recorder.py). ELAN and Praat open one sound per annotation file, starting at time 0, so the
export joins the segments into one file whose frame ``i`` is native-rate stream frame ``i``:
the time before recording started and any gap between segments (a mute, dropped audio) are
silence, and every annotation time points at the audio it describes.

The file is 16-bit PCM at the native rate, with every channel: the format every annotation
tool plays, at half the size of the float segments (about 345 MB per hour at 48 kHz mono).
Samples beyond full scale are clipped here; the session keeps the bit-exact recording. One
block at a time is in memory, whatever the recording's length.

A WAV already under that name with the joined recording's rate, channels and length (an
earlier export of the same session, or the very file the session analysed) is linked as it is,
so exporting one session to both ELAN and Praat writes the audio once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from streamser.session.errors import SessionError
from streamser.session.recorder import list_recording_segments
from streamser.session.recording import recording_audio

AUDIO_SUFFIX = ".wav"
AUDIO_SUBTYPE = "PCM_16"
SILENCE_BLOCK_FRAMES = 65_536
"""Frames of silence written per call when filling a gap."""


@dataclass(frozen=True)
class RecordingShape:
    """What the joined recording of a session will be: its rate, channels and length."""

    sample_rate_hz: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz


def recording_shape(session_dir: Path) -> RecordingShape | None:
    """The joined recording's shape, from the segments' headers; None without a recording."""
    segments = list_recording_segments(session_dir)
    if not segments:
        return None
    first = segments[0]
    return RecordingShape(first.sample_rate_hz, first.channels, max(s.end_frame for s in segments))


def wav_matches(path: Path, shape: RecordingShape) -> bool:
    """True when ``path`` is a sound file of the joined recording's rate, channels and
    length: linking it puts every annotation on the audio it describes."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return (info.samplerate, info.channels, info.frames) == (
        shape.sample_rate_hz,
        shape.channels,
        shape.frames,
    )


def write_joined_recording(session_dir: Path, f: IO[Any]) -> float:
    """Write the session's recording to the binary file ``f`` as one WAV on the stream clock;
    returns its length in seconds. SessionError when it recorded nothing or its segments do
    not fit together."""
    audio = recording_audio(session_dir)
    channels = list_recording_segments(session_dir)[0].channels
    written = 0
    try:
        with sf.SoundFile(
            f,
            "w",
            samplerate=audio.sample_rate_hz,
            channels=channels,
            subtype=AUDIO_SUBTYPE,
            format="WAV",
        ) as out:
            for first, block in audio.open_blocks():
                while written < first:
                    n = min(SILENCE_BLOCK_FRAMES, first - written)
                    out.write(np.zeros((n, channels), np.float32))
                    written += n
                block = block[max(0, written - first) :]
                out.write(np.clip(block, -1.0, 1.0))
                written += len(block)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise SessionError(f"cannot write the recording of session {session_dir.name}: {e}") from e
    return written / audio.sample_rate_hz
