"""One emotion estimate for one analysis window: the unit every consumer receives."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """The model's reading of one window, stamped with the stream clock and wall clock.

    Times ``t_start_s``/``t_end_s`` are on the stream's sample clock (16 kHz samples since the
    stream started, divided by 16,000), so they equal the capture time of the audio.
    ``probs`` and the derived values are ``None`` when the window was not run through the model
    (``--skip-non-speech`` on a non-speech window). ``skipped_windows`` and ``dropped_samples``
    are running totals at the time of this estimate.
    """

    seq: int
    window: int
    t_start_s: float
    t_end_s: float
    wall_time: str
    probs: tuple[float, ...] | None
    arousal: float | None
    valence: float | None
    arousal_smooth: float | None
    valence_smooth: float | None
    speech: float | None
    is_speech: bool
    compute_s: float
    latency_s: float
    skipped_windows: int
    dropped_samples: int

    def to_json_dict(self) -> dict[str, Any]:
        """A plain dict for JSON: the headless output's and the session log's schema."""
        d = asdict(self)
        d["probs"] = list(self.probs) if self.probs is not None else None
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_json_dict`; unknown keys are ignored (old readers, new logs)."""
        probs = d.get("probs")
        return cls(
            seq=int(d["seq"]),
            window=int(d.get("window", d["seq"])),
            t_start_s=float(d["t_start_s"]),
            t_end_s=float(d["t_end_s"]),
            wall_time=str(d["wall_time"]),
            probs=tuple(float(p) for p in probs) if probs is not None else None,
            arousal=_opt_float(d.get("arousal")),
            valence=_opt_float(d.get("valence")),
            arousal_smooth=_opt_float(d.get("arousal_smooth")),
            valence_smooth=_opt_float(d.get("valence_smooth")),
            speech=_opt_float(d.get("speech")),
            is_speech=bool(d.get("is_speech", True)),
            compute_s=float(d.get("compute_s", 0.0)),
            latency_s=float(d.get("latency_s", 0.0)),
            skipped_windows=int(d.get("skipped_windows", 0)),
            dropped_samples=int(d.get("dropped_samples", 0)),
        )


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)
