"""The static report: PNG of the intended size, self-contained HTML, honest labelling."""

from __future__ import annotations

import base64
import io
import math
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.reader import SessionData
from streamser.session.report import (
    DEMO_WARNING,
    FIGURE_SIZE_PX,
    build_figure,
    is_demo_model,
    non_speech_spans,
    write_report,
)


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
