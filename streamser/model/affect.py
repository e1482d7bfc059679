"""From the six class probabilities to the continuous arousal/valence trajectories users watch.

Class index i means arousal = i // 3 (0 low, 1 high) and valence = i % 3 (0 negative, 1 neutral,
2 positive). The trajectories are *derived* quantities:

* arousal = P(high arousal) = p3 + p4 + p5, in [0, 1];
* valence = expected valence = (p2 + p5) - (p0 + p3), in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamser.labels import CLASS_NAMES

__all__ = [
    "CLASS_NAMES",
    "AffectSmoother",
    "Prediction",
    "arousal_of",
    "softmax",
    "valence_of",
]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def arousal_of(probs: Sequence[float] | np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64)
    return float(np.clip(p[3] + p[4] + p[5], 0.0, 1.0))


def valence_of(probs: Sequence[float] | np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64)
    return float(np.clip((p[2] + p[5]) - (p[0] + p[3]), -1.0, 1.0))


class AffectSmoother:
    """Exponential smoothing of arousal and valence on the stream clock.

    The weight of a new value depends on the stream time since the previous one
    (``alpha = 1 - exp(-dt / time_constant_s)``), so the smoothing means the same thing whatever
    the hop and whether windows were skipped. Non-speech windows are not pushed, so silence does
    not drag the trajectory toward whatever the model says about noise.
    """

    def __init__(self, time_constant_s: float = 4.0) -> None:
        if time_constant_s < 0:
            raise ValueError("smoothing time constant must be >= 0 seconds")
        self.time_constant_s = time_constant_s
        self.reset()

    def reset(self) -> None:
        self.arousal: float | None = None
        self.valence: float | None = None
        self._last_t_s: float | None = None

    def push(self, t_s: float, arousal: float, valence: float) -> tuple[float, float]:
        """Feed one speech window's values at stream time ``t_s``; returns the smoothed pair."""
        if self.arousal is None or self.valence is None or self._last_t_s is None:
            self.arousal, self.valence = arousal, valence
        else:
            dt = max(0.0, t_s - self._last_t_s)
            tau = self.time_constant_s
            alpha = 1.0 if tau == 0 else 1.0 - math.exp(-dt / tau)
            self.arousal += alpha * (arousal - self.arousal)
            self.valence += alpha * (valence - self.valence)
        self._last_t_s = t_s
        return self.arousal, self.valence


@dataclass(frozen=True)
class Prediction:
    """One window's output: raw logits, softmax probabilities and the derived trajectories."""

    logits: np.ndarray
    probs: np.ndarray
    arousal: float
    valence: float

    @classmethod
    def from_logits(cls, logits: np.ndarray) -> Prediction:
        logits = np.asarray(logits, dtype=np.float32)
        probs = softmax(logits)
        return cls(logits, probs, arousal_of(probs), valence_of(probs))

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def top_class(self) -> str:
        return CLASS_NAMES[int(np.argmax(self.probs))]
