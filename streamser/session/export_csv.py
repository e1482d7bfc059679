"""A session's estimates as one CSV table, one row per estimate, for statistics tools.

Rows keep the order of estimates.jsonl (by stream when they were logged interleaved) and
carry the window's times, not the export's intervals (see :mod:`streamser.session.export`):
the table is the log itself, in columns. Numbers are written in full, so they read back equal
to the log; a value the log leaves out (null probabilities on a skipped window) is an empty
cell.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES
from streamser.session.export import top_class

CSV_COLUMNS: tuple[str, ...] = (
    "stream", "seq", "window", "t_start_s", "t_end_s", "class", "class_prob", "arousal",
    "valence", "speech", "is_speech",
)  # fmt: skip
"""The columns, in order: ``class`` is the most probable class and ``class_prob`` its
probability; ``speech`` the window's speech fraction and ``is_speech`` the gate's verdict."""


def csv_row(e: Estimate) -> dict[str, Any]:
    """One estimate as a row (None becomes an empty cell)."""
    top = top_class(e.probs)
    return {
        "stream": e.stream,
        "seq": e.seq,
        "window": e.window,
        "t_start_s": e.t_start_s,
        "t_end_s": e.t_end_s,
        "class": CLASS_NAMES[top[0]] if top is not None else None,
        "class_prob": top[1] if top is not None else None,
        "arousal": e.arousal,
        "valence": e.valence,
        "speech": e.speech,
        "is_speech": e.is_speech,
    }


def write_csv(estimates: Iterable[Estimate], f: IO[str]) -> int:
    """Write the table to the text file ``f`` (opened with ``newline=""``); returns the rows."""
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    n = 0
    for e in estimates:
        writer.writerow(csv_row(e))
        n += 1
    return n
