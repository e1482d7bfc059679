"""Reports of sessions with several streams (``--per-channel``): a row of panels per stream on
one time axis, a streams table in the page; the streams come from meta.json or the log."""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_session_report import REAL_MODEL, make_session

from streamser.contracts import MAIN_STREAM, Estimate, StreamSpec
from streamser.session.reader import SessionData
from streamser.session.report import write_report
from streamser.session.report_figure import (
    FIGURE_SIZE_PX,
    MAX_FIGURE_HEIGHT_PX,
    build_figure,
    figure_size_px,
)
from streamser.session.report_html import render_html, stream_rows, summary_rows
from streamser.session.streams import estimates_by_stream, session_streams, stream_specs

STREAMS = [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]


def two_streams(
    n: int = 80, *, bob_starts_s: float = 0.0, bob_ends_s: float = math.inf
) -> SessionData:
    """A two-stream session as a run with ``--per-channel`` logs it: one ``seq`` across both,
    ``window`` counting per stream, estimates interleaved. Bob is silent (non-speech) in his
    first ten windows; alice speaks throughout, with other values than bob's."""
    base = make_session(REAL_MODEL, n=n)
    estimates: list[Estimate] = []
    bob_windows = 0
    for e in base.estimates:
        a = 0.5 + 0.3 * math.sin(e.window / 9)
        v = 0.6 * math.cos(e.window / 13)
        alice = dataclasses.replace(
            e, stream="alice", is_speech=True, arousal=a, valence=v,
            arousal_smooth=a, valence_smooth=v, probs=(1 / 6,) * 6,
        )  # fmt: skip
        estimates.append(dataclasses.replace(alice, seq=len(estimates)))
        if bob_starts_s <= e.t_end_s <= bob_ends_s:
            speech = bob_windows >= 10
            bob_windows += 1
            bob = dataclasses.replace(
                alice, stream="bob", is_speech=speech, probs=alice.probs if speech else None,
                arousal=1 - a if speech else None, valence=-v if speech else None,
                arousal_smooth=1 - a, valence_smooth=-v,
            )  # fmt: skip
            estimates.append(dataclasses.replace(bob, seq=len(estimates)))
    meta = {**base.meta, "streams": STREAMS}
    return dataclasses.replace(base, meta=meta, estimates=estimates)


def time_axes(figure: Any) -> tuple[list[Any], list[Any]]:
    """The figure's arousal and valence axes, top to bottom."""
    arousal = [ax for ax in figure.axes if ax.get_ylabel() == "arousal (derived)"]
    valence = [ax for ax in figure.axes if ax.get_ylabel() == "valence (derived)"]
    return arousal, valence


# --- which streams ------------------------------------------------------------------------------


def test_streams_come_from_meta_then_from_the_estimates() -> None:
    session = two_streams(10)
    assert session_streams(session) == (StreamSpec("alice", 0), StreamSpec("bob", 1))
    # a stream the log names but meta.json does not list comes after the listed ones
    carol = dataclasses.replace(session.estimates[0], stream="carol", seq=999)
    specs = stream_specs({"streams": STREAMS[1:]}, [*session.estimates, carol])
    assert [s.name for s in specs] == ["bob", "alice", "carol"]
    assert specs[2].channel is None
    # an old session: no "streams" in meta.json, no "stream" in the log
    assert session_streams(make_session(REAL_MODEL, n=5)) == (MAIN_STREAM,)
    # a damaged list is read as far as it makes sense
    damaged = {"streams": [{"name": "x", "channel": "one"}, "junk", {"channel": 3}, {"name": "x"}]}
    assert stream_specs(damaged, []) == (StreamSpec("x", None),)
    groups = estimates_by_stream(session.estimates, session_streams(session))
    assert list(groups) == ["alice", "bob"]
    assert [e.window for e in groups["bob"]] == list(range(10))
    assert all(e.stream == "alice" for e in groups["alice"])


# --- the figure ---------------------------------------------------------------------------------


def test_one_row_of_panels_per_stream_on_a_shared_time_axis() -> None:
    session = two_streams(bob_starts_s=20.0)  # bob's estimates cover less time than alice's
    figure = build_figure(session)
    arousal, valence = time_axes(figure)
    assert len(arousal) == len(valence) == 2
    planes = [ax for ax in figure.axes if "plane" in ax.get_title() or "density" in ax.get_title()]
    assert len(planes) == 2
    assert planes[0].get_title().startswith("alice: ") and planes[1].get_title().startswith("bob: ")
    limits = {ax.get_xlim() for ax in arousal + valence}
    assert len(limits) == 1  # one time axis for every stream
    (left, right), last_end = limits.pop(), max(e.t_end_s for e in session.estimates)
    assert left < 3.0 and right >= last_end - 1.5  # it spans both streams' estimates
    titles = [ax.get_title(loc="left") for ax in arousal]
    assert titles == ["alice (channel 1): over time", "bob (channel 2): over time"]
    # rows top to bottom, each stream's arousal above its valence
    tops = [ax.get_position().y0 for ax in (arousal[0], valence[0], arousal[1], valence[1])]
    assert tops == sorted(tops, reverse=True)
    # only the last row labels the time axis; only the first carries the legends
    assert [ax.get_xlabel() for ax in valence] == ["", "stream time (s)"]
    assert arousal[0].get_legend() is not None and arousal[1].get_legend() is None
    legend = [t.get_text() for t in arousal[0].get_legend().get_texts()]
    assert "non-speech" in legend  # alice never stops speaking: bob's shading is explained


def test_each_row_draws_its_own_stream() -> None:
    session = two_streams(40)
    arousal, _ = time_axes(build_figure(session))
    groups = estimates_by_stream(session.estimates, session_streams(session))
    for ax, name in zip(arousal, ("alice", "bob"), strict=True):
        raw = ax.get_lines()[0]
        expected = [math.nan if e.arousal is None else e.arousal for e in groups[name]]
        assert raw.get_ydata().tolist() == pytest.approx(expected, nan_ok=True)
    bob_shading = [p for p in arousal[1].patches if not p.get_hatch()]
    assert bob_shading and not [p for p in arousal[0].patches if not p.get_hatch()]


def test_marks_are_drawn_on_every_row_and_noted_once() -> None:
    session = two_streams(80)
    figure = build_figure(session)
    arousal, valence = time_axes(figure)
    for ax in arousal + valence:
        marked = [line for line in ax.get_lines() if line.get_color() == "darkgreen"]
        assert sorted(line.get_xdata()[0] for line in marked) == [12.0, 40.0]
    notes = [t.get_text() for ax in arousal for t in ax.texts]
    assert notes == [" laughed <loudly> & long", " call"]


def test_png_of_two_streams_is_taller_and_bounded(tmp_path: Path) -> None:
    out = tmp_path / "two.png"
    write_report(two_streams(20), out)
    with Image.open(out) as image:
        assert image.size == figure_size_px(2)
    assert figure_size_px(2)[1] > FIGURE_SIZE_PX[1] and figure_size_px(2)[0] == FIGURE_SIZE_PX[0]
    assert figure_size_px(1) == FIGURE_SIZE_PX
    assert figure_size_px(64)[1] == MAX_FIGURE_HEIGHT_PX


def test_a_stream_without_estimates_still_gets_its_row() -> None:
    session = two_streams(20, bob_starts_s=math.inf)  # bob never produced an estimate
    arousal, _ = time_axes(build_figure(session))
    assert len(arousal) == 2
    assert "no estimates" in [t.get_text() for t in arousal[1].texts]


# --- the page -----------------------------------------------------------------------------------


def test_html_has_a_row_per_stream_and_no_mixed_means(tmp_path: Path) -> None:
    session = two_streams(40)
    rows = stream_rows(session)
    assert [r[:4] for r in rows] == [("alice", "1", "40", "40"), ("bob", "2", "40", "30")]
    summary = dict(summary_rows(session))
    assert summary["Streams"] == "alice (channel 1), bob (channel 2)"
    assert summary["Estimates"] == "80"
    assert "Mean arousal (derived)" not in summary
    out = tmp_path / "two.html"
    write_report(session, out)
    page = out.read_text(encoding="utf-8")
    assert "<h2>Streams</h2>" in page
    for name in ("alice", "bob"):
        assert f"<tr><td>{name}</td>" in page
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    with Image.open(io.BytesIO(base64.b64decode(match.group(1)))) as image:
        assert image.size == figure_size_px(2)


def test_one_stream_page_and_figure_are_as_before() -> None:
    session = make_session(REAL_MODEL, n=30)
    assert stream_rows(session) == []
    assert "<h2>Streams</h2>" not in render_html(session, b"")
    summary = dict(summary_rows(session))
    assert "Streams" not in summary and "Mean arousal (derived)" in summary
    figure = build_figure(session)
    assert figure.get_size_inches().tolist() == [16.0, 10.0]
    arousal, valence = time_axes(figure)
    assert len(arousal) == len(valence) == 1
    assert arousal[0].get_title(loc="left") == "over time"
