"""What a session report says beside its curves, shared by the figure and the HTML page: how
the run was set up, its muted and recorded stretches, and meta.json values in plain words."""

from __future__ import annotations

import math
from typing import Any

from streamser.labels import DEMO_WARNING
from streamser.session.catalog import is_demo_model, model_label
from streamser.session.errors import SessionError
from streamser.session.reader import SessionData
from streamser.session.recorder import list_recording_segments

DERIVED_NOTE = (
    "Arousal and valence are derived quantities, computed from the model's class "
    "probabilities; they are not measurements of what anyone felt."
)
MAX_INPUT_CHARS = 48
Span = tuple[float, float]


def mute_spans(session: SessionData) -> list[Span]:
    """Muted stretches in stream seconds, from meta.json's ``mutes``. A mute still on when the
    log ended (the sink closes every mute at a clean close) has no known end: it ends at
    ``math.inf``, which the figure draws to its right edge and the HTML calls the end of the
    log."""
    found = session.meta.get("mutes")
    spans: list[Span] = []
    for mute in found if isinstance(found, list) else []:
        if not isinstance(mute, dict):
            continue
        lo, hi = float_or_none(mute.get("t_start_s")), float_or_none(mute.get("t_end_s"))
        if lo is None:
            continue
        hi = hi if hi is not None else math.inf
        if hi >= lo:
            spans.append((lo, hi))
    return spans


def recorded_spans(session: SessionData) -> list[Span]:
    """Stretches of recorded audio in stream seconds, merged where segments touch: from the
    segment files when the session's directory has them (their headers are the truth after a
    kill), else from meta.json's ``audio_segments``."""
    spans: list[Span] = []
    try:
        segments = list_recording_segments(session.path)
    except (SessionError, OSError):
        segments = []
    if segments:
        spans = [
            (s.start_frame / s.sample_rate_hz, s.end_frame / s.sample_rate_hz) for s in segments
        ]
    else:
        audio = session.meta.get("audio")
        rate = float_or_none(audio.get("sample_rate_hz")) if isinstance(audio, dict) else None
        found = session.meta.get("audio_segments")
        for seg in found if isinstance(found, list) else []:
            if not isinstance(seg, dict):
                continue
            start_frame, frames = float_or_none(seg.get("start_frame")), seg.get("frames")
            start_s = float_or_none(seg.get("start_s"))
            if start_s is None and start_frame is not None and rate:
                start_s = start_frame / rate
            n = float_or_none(frames)
            if start_s is not None and n is not None and rate:
                spans.append((start_s, start_s + n / rate))
    merged: list[Span] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1e-6:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def settings_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """How the run was set up, as meta.json recorded it: model, hop, smoothing, voice-activity
    threshold, input and compute. Whatever is missing says "not recorded"."""
    config = section(meta, "config")
    windows, model_cfg = section(config, "windows"), section(config, "model")
    audio, compute = section(meta, "audio"), section(meta, "compute")
    hop = float_or_none(windows.get("hop_s"))
    smooth = float_or_none(windows.get("smooth_s"))
    threshold = float_or_none(windows.get("vad_threshold"))
    if windows.get("vad") is False:
        vad = "off (every window counts as speech)"
    else:
        vad = format_value(threshold) if threshold is not None else NOT_RECORDED
        if windows.get("skip_non_speech") is True:
            vad += ", non-speech windows skipped"
    source = str(audio.get("source") or audio.get("device") or "")
    if len(source) > MAX_INPUT_CHARS:
        source = "…" + source[-(MAX_INPUT_CHARS - 1) :]
    rate, channels = audio.get("sample_rate_hz"), audio.get("channels")
    details = [f"{format_value(rate)} Hz" if rate else "", f"{channels} ch" if channels else ""]
    if audio.get("realtime") is False:
        details.append("as fast as possible")
    shown = ", ".join(d for d in details if d)
    input_text = (source or NOT_RECORDED) + (f" ({shown})" if shown else "")
    compute_parts = [str(compute[k]) for k in ("device", "dtype", "backend") if compute.get(k)]
    if model_cfg.get("quantize"):
        compute_parts.append(f"quantized {model_cfg['quantize']}")
    model = model_label(meta) + (f" ({DEMO_WARNING})" if is_demo_model(meta) else "")
    return [
        ("Model", model),
        ("Hop", f"{format_value(hop)} s" if hop is not None else NOT_RECORDED),
        (
            "Smoothing",
            (f"{format_value(smooth)} s" if smooth else "off")
            if smooth is not None
            else NOT_RECORDED,
        ),
        ("VAD threshold", vad),
        ("Input", input_text),
        ("Compute", " ".join(compute_parts) if compute_parts else NOT_RECORDED),
    ]


NOT_RECORDED = "not recorded"


def format_value(value: Any) -> str:
    """A meta.json value in words and numbers, never a Python repr: None is "none", booleans
    "yes"/"no", floats at most 6 significant digits, lists joined with "; " ("none" when
    empty), objects as "key: value" pairs joined with ", "."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return "; ".join(format_value(v) for v in value) or "none"
    return str(value)


def section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    found = meta.get(key)
    return found if isinstance(found, dict) else {}
