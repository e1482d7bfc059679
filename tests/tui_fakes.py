"""A scripted stand-in for the engine, so the dashboard can be tested without audio or a model.

``ScriptedController`` implements :class:`~streamser.tui.controller.DashboardController`,
records every call the dashboard makes, and lets a test push estimates to the subscriber at
exactly the moments it chooses. ``scripted_estimates`` builds a deterministic stream with
speech and non-speech spans, so snapshots are identical run to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from streamser.constants import WINDOW_S
from streamser.contracts import Estimate, StatusSnapshot, StreamStatus, estimates_after

BASE_STATUS = StatusSnapshot(
    device="USB Microphone (hw:2,0)",
    sample_rate_hz=48_000,
    model_name="amiriparian/ExHuBERT",
    demo_model=False,
    compute_device="cpu",
    dtype="float32",
    hop_s=0.5,
    rtf=0.42,
    latency_s=0.81,
    skipped_windows=3,
    dropped_samples=0,
    recording=False,
    muted=False,
    logging=True,
    log_error=None,
    session_path="sessions/2024-05-01T10-00-00",
    level_dbfs=-23.5,
    clipping=False,
    silence_warning=None,
    source_error=None,
    finished=False,
)
"""A plausible live status; tests derive variants with ``dataclasses.replace``."""


def _softmax(logits: list[float]) -> tuple[float, ...]:
    m = max(logits)
    exps = [math.exp(x - m) for x in logits]
    total = sum(exps)
    return tuple(e / total for e in exps)


def _raw(seq: int) -> tuple[tuple[float, ...], float, float]:
    """Probabilities from slowly rotating logits, and arousal and valence derived from them the
    way the model's are: P(high) and P(positive) - P(negative)."""
    phase = seq * 0.11
    logits = [2.0 * math.sin(phase + k * 1.05) + 0.3 * math.cos(3.1 * phase + k) for k in range(6)]
    probs = _softmax(logits)
    return probs, sum(probs[3:]), (probs[2] + probs[5]) - (probs[0] + probs[3])


def scripted_estimate(
    seq: int, *, hop_s: float = 0.5, speech: bool = True, smooth_n: int = 6
) -> Estimate:
    """Estimate number ``seq`` of a smooth, deterministic trajectory.

    The smoothed values are the mean of the last ``smooth_n`` raw ones, so they lag and are
    visibly calmer than the raw ones. Non-speech estimates carry no probabilities.
    """
    t_end = WINDOW_S + seq * hop_s
    probs, arousal, valence = _raw(seq)
    recent = [_raw(k) for k in range(max(0, seq - smooth_n + 1), seq + 1)]
    smooth_a = sum(r[1] for r in recent) / len(recent)
    smooth_v = sum(r[2] for r in recent) / len(recent)
    return Estimate(
        seq=seq,
        window=seq,
        t_start_s=t_end - WINDOW_S,
        t_end_s=t_end,
        wall_time=f"2024-05-01T10:00:{seq % 60:02d}",
        probs=probs if speech else None,
        arousal=arousal if speech else None,
        valence=valence if speech else None,
        arousal_smooth=smooth_a,
        valence_smooth=smooth_v,
        speech=0.9 if speech else 0.05,
        is_speech=speech,
        compute_s=0.2,
        latency_s=0.8,
        skipped_windows=0,
        dropped_samples=0,
    )


def scripted_estimates(
    n: int, *, start: int = 0, hop_s: float = 0.5, nonspeech_every: int = 40, nonspeech_len: int = 8
) -> list[Estimate]:
    """``n`` estimates from ``start``; every ``nonspeech_every``-th run of ``nonspeech_len`` is
    non-speech, so the plots show shaded gaps."""
    return [
        scripted_estimate(
            seq, hop_s=hop_s, speech=(seq % nonspeech_every) < nonspeech_every - nonspeech_len
        )
        for seq in range(start, start + n)
    ]


STREAM_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
"""Streams of a scripted ``--per-channel`` run, in channel order."""


def scripted_streams(
    n_windows: int, names: tuple[str, ...], *, start: int = 0, hop_s: float = 0.5
) -> list[Estimate]:
    """``n_windows`` windows of each stream in ``names``, interleaved as a ``--per-channel`` run
    produces them: one ``seq`` over all streams, ``window`` and the clock per stream. Each
    stream follows the scripted trajectory at its own phase and has its non-speech stretches
    at other times, so every stream's plots look different."""
    out = []
    for window in range(start, start + n_windows):
        for k, name in enumerate(names):
            speech = (window + 13 * k) % 40 < 32
            e = scripted_estimate(window + 23 * k, hop_s=hop_s, speech=speech)
            t_end = WINDOW_S + window * hop_s
            out.append(
                replace(
                    e,
                    seq=window * len(names) + k,
                    window=window,
                    t_start_s=t_end - WINDOW_S,
                    t_end_s=t_end,
                    stream=name,
                )
            )
    return out


def streams_status(names: tuple[str, ...], **changes: Any) -> StatusSnapshot:
    """``BASE_STATUS`` for a run with a stream per name, each a little quieter than the last."""
    streams = tuple(
        StreamStatus(
            name=name,
            level_dbfs=-18.0 - 6.0 * k,
            clipping=False,
            silence_warning=None,
            estimates=0,
            skipped_windows=0,
        )
        for k, name in enumerate(names)
    )
    return replace(BASE_STATUS, streams=streams, **changes)


class ScriptedController:
    """Records what the dashboard asks for and emits estimates when the test says so."""

    def __init__(
        self,
        *,
        status: StatusSnapshot = BASE_STATUS,
        history: Iterable[Estimate] = (),
        is_replay: bool = False,
        fail_start: Exception | None = None,
    ) -> None:
        self.is_replay = is_replay
        self._status = status
        self._history = list(history)
        self._fail_start = fail_start
        self.subscribers: list[Callable[[Estimate], None]] = []
        self.started = 0
        self.stopped = 0
        self.mute_calls: list[bool] = []
        self.recording_calls: list[bool] = []
        self.marks: list[str] = []
        self.history_calls = 0

    # --- the protocol ---------------------------------------------------------------------

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        self.subscribers.append(fn)

    def history_since(self, seq: int) -> list[Estimate]:
        self.history_calls += 1
        return estimates_after(seq, self._history)

    def status(self) -> StatusSnapshot:
        return self._status

    def start(self) -> None:
        self.started += 1
        if self._fail_start is not None:
            raise self._fail_start

    def stop(self) -> None:
        self.stopped += 1

    def set_muted(self, muted: bool) -> None:
        self.mute_calls.append(muted)
        self._status = replace(self._status, muted=muted)

    def set_recording(self, on: bool) -> None:
        self.recording_calls.append(on)
        self._status = replace(self._status, recording=on)

    def add_mark(self, note: str) -> None:
        self.marks.append(note)

    # --- test controls --------------------------------------------------------------------

    def emit(self, estimates: Iterable[Estimate]) -> None:
        """Hand each estimate to every subscriber, as the engine thread would, and keep it."""
        for e in estimates:
            self._history.append(e)
            for fn in self.subscribers:
                fn(e)

    def set_status(self, **changes: Any) -> None:
        """Change fields of the status the dashboard polls next."""
        self._status = replace(self._status, **changes)

    @property
    def muted(self) -> bool:
        return self._status.muted

    @property
    def recording(self) -> bool:
        return self._status.recording
