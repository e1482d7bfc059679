"""One summary per analysed file and stream, computed from its window rows alone.

The same figures for ``analyze``'s summary rows and for the summary table of a Ray run, so that
anyone holding the window rows can recompute them:

* ``duration_s``: the recording's length (not derivable from the windows, passed in);
* ``windows``, ``speech_windows``: the rows, and those judged speech that the model ran on;
* ``speech_s``: speech time, ``speech_windows * hop_s`` (each window stands for one hop of the
  stream; windows overlap, so summing their lengths would count speech three times);
* ``mean_arousal``, ``sd_arousal``, ``mean_valence``, ``sd_valence``: mean and population
  standard deviation over the speech windows;
* ``share_p0`` .. ``share_p5``: the share of speech time whose most probable class is class k
  (each speech window's hop counted once, so the shares of a file with speech sum to 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamser.constants import DEFAULT_STREAM_NAME, NUM_CLASSES

SHARE_COLUMNS = [f"share_p{i}" for i in range(NUM_CLASSES)]
SUMMARY_COLUMNS = [
    "file", "stream", "duration_s", "windows", "speech_windows", "unrecorded_windows",
    "speech_s", "mean_arousal", "sd_arousal", "mean_valence", "sd_valence", *SHARE_COLUMNS,
]  # fmt: skip
"""A summary's fields, in order (the summary table's columns)."""


def summarize(
    file: str,
    rows: Sequence[dict[str, Any]],
    duration_s: float,
    hop_s: float,
    *,
    stream: str = DEFAULT_STREAM_NAME,
    unrecorded: int = 0,
) -> dict[str, Any]:
    """The summary of one file's stream from its window rows (``probs`` as a list or flattened
    to ``p0``..``p5``; ``arousal``, ``valence``, ``is_speech``)."""
    speech = [r for r in rows if _truthy(r["is_speech"]) and r["arousal"] is not None]
    arousal = np.array([float(r["arousal"]) for r in speech])
    valence = np.array([float(r["valence"]) for r in speech])
    summary: dict[str, Any] = {
        "file": file,
        "stream": stream,
        "duration_s": round(duration_s, 4),
        "windows": len(rows),
        "speech_windows": len(speech),
        "unrecorded_windows": unrecorded,
        "speech_s": round(len(speech) * hop_s, 6),
        "mean_arousal": _stat(np.mean, arousal),
        "sd_arousal": _stat(np.std, arousal),
        "mean_valence": _stat(np.mean, valence),
        "sd_valence": _stat(np.std, valence),
    }
    top = [int(np.argmax(_probs(r))) for r in speech]
    for k, col in enumerate(SHARE_COLUMNS):
        summary[col] = top.count(k) / len(top) if top else None
    return summary


def _stat(fn: Any, x: np.ndarray) -> float | None:
    return float(fn(x)) if len(x) else None


def _probs(row: dict[str, Any]) -> list[float]:
    probs = row.get("probs")
    if probs is not None:
        return [float(p) for p in probs]
    return [float(row[f"p{i}"]) for i in range(NUM_CLASSES)]


def _truthy(value: Any) -> bool:
    """A row's boolean, also as CSV writes it (``True``/``False``)."""
    return value in (True, "True", "true", 1)
