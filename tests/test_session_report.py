"""The static report: PNG of the intended size, self-contained HTML, honest labelling."""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from streamser.contracts import Estimate
from streamser.labels import DEMO_WARNING
from streamser.session.catalog import is_demo_model
from streamser.session.errors import SessionError
from streamser.session.reader import SessionData
from streamser.session.report import write_report
from streamser.session.report_facts import format_value, mute_spans, recorded_spans, settings_rows
from streamser.session.report_figure import FIGURE_SIZE_PX, build_figure, non_speech_spans
from streamser.session.report_html import render_html, summary_rows


def make_session(model: dict[str, Any], n: int = 120) -> SessionData:
    estimates = []
    for i in range(n):
        speech = (i // 15) % 3 != 0
        a = 0.5 + 0.3 * math.sin(i / 9) if speech else None
        v = 0.6 * math.cos(i / 13) if speech else None
        estimates.append(
            Estimate(
                seq=i,
                window=i,
                t_start_s=i * 0.5,
                t_end_s=i * 0.5 + 3.0,
                wall_time="2026-11-23T22:15:30+00:00",
                probs=(1 / 6,) * 6 if speech else None,
                arousal=a,
                valence=v,
                arousal_smooth=a,
                valence_smooth=v,
                speech=0.9 if speech else 0.05,
                is_speech=speech,
                compute_s=0.2,
                latency_s=0.4,
                skipped_windows=0,
                dropped_samples=0,
            )
        )
    meta = {
        "session_id": "20261123-221530-a1b2c3",
        "start_time": "2026-11-23T22:15:30+01:00",
        "end_time": "2026-11-23T22:16:35+01:00",
        "closed": True,
        "model": model,
        "counters": {"dropped_samples": 0, "skipped_windows": 3},
    }
    return SessionData(
        path=Path("/nonexistent"),
        session_id="20261123-221530-a1b2c3",
        meta=meta,
        estimates=estimates,
        marks=[{"t_s": 12.0, "note": "laughed <loudly> & long"}, {"t_s": 40.0, "note": "call"}],
        clean=True,
        truncated_lines=0,
    )


REAL_MODEL = {"name": "amiriparian/ExHuBERT", "revision": "b158d45ed857"}


def test_png_has_the_intended_pixel_size_and_is_private(tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    write_report(make_session(REAL_MODEL), out)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == FIGURE_SIZE_PX == (1600, 1000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # something was drawn
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_html_is_self_contained_with_the_figure_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "report.HTML"
    write_report(make_session(REAL_MODEL), out)
    page = out.read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    with Image.open(io.BytesIO(base64.b64decode(match.group(1)))) as image:
        assert image.size == FIGURE_SIZE_PX
    assert "20261123-221530-a1b2c3" in page
    assert "amiriparian/ExHuBERT@b158d45" in page
    assert "laughed &lt;loudly&gt; &amp; long" in page  # notes are escaped
    assert "<th>Estimates</th><td>120</td>" in page
    assert "<th>Counter: skipped_windows</th><td>3</td>" in page
    assert "derived quantities" in page
    assert DEMO_WARNING not in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere


def test_demo_model_is_labelled_in_figure_and_page(tmp_path: Path) -> None:
    session = make_session({"name": "demo", "demo": True})
    texts = [t.get_text() for t in build_figure(session).texts]
    assert any(DEMO_WARNING.upper() in t for t in texts)
    assert any("derived quantities" in t for t in texts)
    out = tmp_path / "demo.html"
    write_report(session, out)
    assert DEMO_WARNING in out.read_text(encoding="utf-8")
    real_texts = [t.get_text() for t in build_figure(make_session(REAL_MODEL)).texts]
    assert not any(DEMO_WARNING.upper() in t for t in real_texts)


@pytest.mark.parametrize(
    ("model", "demo"),
    [
        ({"demo": True}, True),
        ({"kind": "demo"}, True),
        ("streamser demo model", True),
        (REAL_MODEL, False),
        ({"demo": False, "name": "x"}, False),
        (None, False),
    ],
)
def test_demo_model_detection(model: Any, demo: bool) -> None:
    assert is_demo_model({"model": model}) is demo


def test_empty_session_still_renders(tmp_path: Path) -> None:
    session = make_session(REAL_MODEL, n=0)
    out = tmp_path / "empty.png"
    write_report(session, out)
    with Image.open(out) as image:
        assert image.size == FIGURE_SIZE_PX


def test_unsupported_suffix_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match=r"supported: \.png, \.html"):
        write_report(make_session(REAL_MODEL, n=1), tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()


def test_non_speech_spans_stop_halfway_to_speech_neighbours() -> None:
    x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    speech = [False, False, True, True, False, True]
    assert non_speech_spans(x, speech) == [(-0.5, 1.5), (3.5, 4.5)]
    assert non_speech_spans([2.0], [False]) == [(1.75, 2.25)]
    assert non_speech_spans([], []) == []


# ------------------------------------------------------------------ settings, mutes, recording


def rich_meta(session: SessionData, **extra: Any) -> SessionData:
    """The session with a meta.json as a real run writes it (see Pipeline.describe)."""
    meta = {
        **session.meta,
        "streamser_version": "0.1.0",
        "compute": {"device": "cuda", "dtype": "float16", "backend": "torch"},
        "audio": {
            "source": "USB Audio Device: hw:2,0", "kind": "MicSource", "sample_rate_hz": 48_000,
            "channels": 2, "stream_rate_hz": 16_000, "realtime": True,
        },
        "config": {
            "model": {"model": "amiriparian/ExHuBERT", "quantize": None, "backend": "torch"},
            "windows": {
                "hop_s": 0.5, "smooth_s": 4.0, "vad": True, "vad_threshold": 0.35,
                "skip_non_speech": False,
            },
        },
        "counters": {
            "estimates": 120, "skipped_windows": 3, "stream_s": 62.5, "source_error": None,
            "consumer_failures": [], "bus": {"delivered": 120, "dropped": 0},
            "compute_s_total": 12.3456789, "half_fallbacks": 0,
        },
        **extra,
    }  # fmt: skip
    return dataclasses.replace(session, meta=meta)


def figure_text(session: SessionData) -> str:
    return "\n".join(t.get_text() for t in build_figure(session).texts)


def test_settings_are_in_the_figure_and_the_page() -> None:
    session = rich_meta(make_session(REAL_MODEL))
    text = figure_text(session)
    for shown in (
        "hop 0.5 s",
        "smoothing 4 s",
        "vad threshold 0.35",
        "input USB Audio Device: hw:2,0 (48000 Hz, 2 ch)",
        "compute cuda float16 torch",
        "model amiriparian/ExHuBERT@b158d45",
    ):
        assert shown in text, shown
    rows = dict(settings_rows(session.meta))
    assert rows == {
        "Model": "amiriparian/ExHuBERT@b158d45",
        "Hop": "0.5 s",
        "Smoothing": "4 s",
        "VAD threshold": "0.35",
        "Input": "USB Audio Device: hw:2,0 (48000 Hz, 2 ch)",
        "Compute": "cuda float16 torch",
    }
    page = render_html(session, b"")
    assert "<th>VAD threshold</th><td>0.35</td>" in page
    assert "<th>Compute</th><td>cuda float16 torch</td>" in page


def test_settings_say_what_was_off_and_what_was_not_recorded() -> None:
    meta: dict[str, Any] = {
        "config": {
            "windows": {"hop_s": 1.0, "smooth_s": 0.0, "vad": False},
            "model": {"quantize": "int8"},
        },
        "compute": {"device": "cpu", "dtype": "float32", "backend": "torch"},
        "audio": {"source": "/x/" + "long-name-" * 10 + "talk.wav", "realtime": False},
        "model": {"name": "demo", "demo": True},
    }
    rows = dict(settings_rows(meta))
    assert rows["Smoothing"] == "off"
    assert rows["VAD threshold"].startswith("off")
    assert rows["Compute"] == "cpu float32 torch quantized int8"
    assert rows["Input"].startswith("…") and rows["Input"].endswith(
        "talk.wav (as fast as possible)"
    )
    assert DEMO_WARNING in rows["Model"]
    bare = dict(settings_rows({}))
    assert bare["Hop"] == bare["Input"] == bare["Compute"] == "not recorded"
    assert bare["Model"] == "unknown model"


def test_mutes_and_recorded_audio_are_drawn_on_both_time_axes() -> None:
    session = rich_meta(
        make_session(REAL_MODEL),
        mutes=[{"t_start_s": 20.0, "t_end_s": 28.0}, {"t_start_s": 50.0, "t_end_s": None}],
        audio_segments=[
            {"file": "audio/a.wav", "start_frame": 240_000, "start_s": 5.0, "frames": 480_000},
            {"file": "audio/b.wav", "start_frame": 720_000, "start_s": 15.0, "frames": 240_000},
            {"file": "audio/c.wav", "start_frame": 1_680_000, "start_s": 35.0, "frames": 384_000},
        ],
    )
    assert mute_spans(session) == [(20.0, 28.0), (50.0, math.inf)]
    assert recorded_spans(session) == [(5.0, 20.0), (35.0, 43.0)]  # touching segments merged
    figure = build_figure(session)
    ax_arousal, ax_valence = figure.axes[:2]
    for ax in (ax_arousal, ax_valence):
        hatched = [p for p in ax.patches if p.get_hatch()]
        assert len(hatched) == 2
        lo, hi = _x_extent(hatched[1])
        assert lo == 50.0 and hi > 62.0  # still muted when the log ended: to the right edge
        strips = [p for p in ax.patches if _is_strip(p)]
        assert sorted(_x_extent(p) for p in strips) == [(5.0, 20.0), (35.0, 43.0)]
    legend = [t.get_text() for t in ax_arousal.get_legend().get_texts()]
    assert {"muted (not captured)", "audio recorded", "non-speech", "mark"} <= set(legend)
    rows = dict(summary_rows(session))
    assert rows["Muted"] == "0:08 in 2 stretches, the last still on when the log ended"
    assert rows["Audio recorded"] == "0:23 in 2 stretches"
    page = render_html(session, b"")
    assert "<tr><td>muted</td><td>50.0</td><td>end of log</td></tr>" in page
    assert "<tr><td>audio</td><td>35.0</td><td>43.0</td></tr>" in page


def test_recorded_audio_comes_from_the_segment_files_when_there_are_some(tmp_path: Path) -> None:
    import numpy as np

    from streamser.session.recorder import AudioRecorder

    recorder = AudioRecorder(tmp_path, 8_000, 1, segment_s=1.0)
    recorder.start(16_000)
    recorder.write(16_000, np.zeros((12_000, 1), np.float32))  # 2.0 .. 3.5 s, two files
    recorder.stop()
    stale = [{"file": "audio/x.wav", "start_frame": 16_000, "start_s": 2.0, "frames": 0}]
    session = dataclasses.replace(
        rich_meta(make_session(REAL_MODEL, n=10), audio_segments=stale), path=tmp_path
    )
    assert recorded_spans(session) == [(2.0, 3.5)]  # the headers, not meta.json's stale copy


def test_nothing_muted_or_recorded_adds_nothing() -> None:
    session = make_session(REAL_MODEL)
    assert mute_spans(session) == [] and recorded_spans(session) == []
    ax = build_figure(session).axes[0]
    assert not [p for p in ax.patches if p.get_hatch() or _is_strip(p)]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "muted (not captured)" not in legend and "audio recorded" not in legend
    assert dict(summary_rows(session))["Muted"] == "none"


def _corners(patch: Any) -> list[tuple[float, float]]:
    """A span's corners in its own coordinates (data x, axes-fraction y), whether matplotlib
    drew it as a Rectangle or a Polygon."""
    points = patch.get_patch_transform().transform(patch.get_path().vertices)
    return [(float(x), float(y)) for x, y in points]


def _x_extent(patch: Any) -> tuple[float, float]:
    xs = [x for x, _ in _corners(patch)]
    return round(min(xs), 3), round(max(xs), 3)


def _is_strip(patch: Any) -> bool:
    """The recorded-audio strip: a span along the bottom 3 % of the axis."""
    ys = [y for _, y in _corners(patch)]
    return not patch.get_hatch() and max(ys) <= 0.031 and min(ys) == 0.0


# ------------------------------------------------------------------ traces and the plane


def test_raw_trace_is_clearly_visible() -> None:
    figure = build_figure(make_session(REAL_MODEL))
    for ax in figure.axes[:2]:
        raw, smooth = ax.get_lines()[:2]
        assert "each window" in str(raw.get_label()) and "smoothed" in str(smooth.get_label())
        assert raw.get_alpha() is None or raw.get_alpha() >= 0.9  # opaque, not a faint ghost
        assert raw.get_linewidth() >= 1.0
        assert raw.get_marker() == "o"  # isolated speech windows still show
        assert raw.get_color() != smooth.get_color()


def speech_points(n: int, spread: bool) -> SessionData:
    """``n`` speech windows: all at one point, or each in a cell of the plane's grid of its own."""
    session = make_session(REAL_MODEL, n=n)
    estimates = [
        dataclasses.replace(
            e,
            is_speech=True,
            arousal=(i // 40) * 0.05 + 0.025 if spread else 0.5,
            valence=-1.0 + (i % 40) * 0.05 + 0.025 if spread else 0.2,
        )
        for i, e in enumerate(session.estimates)
    ]
    return dataclasses.replace(session, estimates=estimates)


@pytest.mark.parametrize(("n", "spread"), [(1, False), (10, False), (40, True), (120, True)])
def test_few_or_scattered_points_are_dots_without_a_colour_bar(n: int, spread: bool) -> None:
    figure = build_figure(speech_points(n, spread))
    assert len(figure.axes) == 3  # arousal, valence, plane: no colour bar
    plane = figure.axes[2]
    assert sum(len(c.get_offsets()) for c in plane.collections) == n
    assert f"n={n}" in plane.get_title()


def test_many_points_show_a_density_with_a_count_scale() -> None:
    figure = build_figure(speech_points(200, spread=False))  # one cell holds all 200
    assert len(figure.axes) == 4
    bar = figure.axes[3]
    assert bar.get_ylabel() == "speech windows per cell"
    ticks = [t for t in bar.get_yticks() if 1 <= t <= 200]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "density" in figure.axes[2].get_title() and "n=200" in figure.axes[2].get_title()


# ------------------------------------------------------------------ no Python reprs in the page


def test_html_prints_values_never_python_reprs() -> None:
    session = rich_meta(make_session(REAL_MODEL))
    page = render_html(session, b"")
    table = page[page.index("<h2>Summary</h2>") : page.index("<img")]
    for repr_sign in ("None", "True", "False", "{", "}", "[", "]", "'", "nan"):
        assert repr_sign not in table, repr_sign
    assert "<th>Counter: source_error</th><td>none</td>" in table
    assert "<th>Counter: consumer_failures</th><td>none</td>" in table
    assert "<th>Counter: bus</th><td>delivered: 120, dropped: 0</td>" in table
    assert "<th>Counter: compute_s_total</th><td>12.3457</td>" in table
    assert "<th>Start</th><td>2026-11-23 22:15:30+01:00</td>" in table


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "none"),
        (True, "yes"),
        (False, "no"),
        (3, "3"),
        (0.1 + 0.2, "0.3"),
        (1e-7, "1e-07"),
        ([], "none"),
        (["a", None, 2.5], "a; none; 2.5"),
        ({}, "none"),
        ({"a": {"b": [1, 2]}, "c": None}, "a: b: 1; 2, c: none"),
        ("plain", "plain"),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text
