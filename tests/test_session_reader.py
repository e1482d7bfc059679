"""Reading sessions back, finding them by id, listing and deleting them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamser.contracts import Estimate
from streamser.session.catalog import (
    DEMO_MARKER,
    delete_sessions,
    format_sessions_table,
    list_sessions,
    model_column,
)
from streamser.session.errors import SessionError
from streamser.session.logger import SessionLogger
from streamser.session.reader import iter_estimates, read_session, resolve_session


def make_estimate(seq: int, arousal: float | None, valence: float | None) -> Estimate:
    speech = arousal is not None
    return Estimate(
        seq=seq,
        window=seq,
        t_start_s=seq * 0.5,
        t_end_s=seq * 0.5 + 3.0,
        wall_time="2026-11-23T22:15:30+00:00",
        probs=(1 / 6,) * 6 if speech else None,
        arousal=arousal,
        valence=valence,
        arousal_smooth=arousal,
        valence_smooth=valence,
        speech=0.9 if speech else 0.1,
        is_speech=speech,
        compute_s=0.1,
        latency_s=0.2,
        skipped_windows=0,
        dropped_samples=0,
    )


def write_session(
    root: Path,
    session_id: str,
    estimates: list[Estimate],
    *,
    closed: bool = True,
    start: str = "2026-11-23T22:15:30+00:00",
    model: Any = None,
) -> Path:
    """A session laid out by hand, as the documented format says, independent of the logger."""
    path = root / session_id
    path.mkdir(parents=True)
    meta: dict[str, Any] = {"session_id": session_id, "start_time": start, "closed": closed}
    if model is not None:
        meta["model"] = model
    (path / "meta.json").write_text(json.dumps(meta))
    lines = "".join(json.dumps(e.to_json_dict()) + "\n" for e in estimates)
    (path / "estimates.jsonl").write_text(lines)
    (path / "marks.jsonl").write_text("")
    return path


def test_truncated_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, {})
    for i in range(3):
        logger.write_estimate(make_estimate(i, 0.5, 0.1))
    logger.add_mark(1.0, "ok")
    logger.close({})
    with (logger.path / "estimates.jsonl").open("a") as f:
        f.write('{"seq": 3, "window": 3, "t_sta')
    with (logger.path / "marks.jsonl").open("a") as f:
        f.write('["not", "a", "mark"]\n{"note": "no time"}\n')

    session = read_session(logger.path)
    assert [e.seq for e in session.estimates] == [0, 1, 2]
    assert [m["note"] for m in session.marks] == ["ok"]
    assert session.truncated_lines == 3
    assert session.clean is True
    assert [e.seq for e in iter_estimates(logger.path)] == [0, 1, 2]


def test_valid_json_that_is_not_an_estimate_is_counted(tmp_path: Path) -> None:
    path = write_session(tmp_path, "s1", [make_estimate(0, 0.5, 0.0)])
    with (path / "estimates.jsonl").open("a") as f:
        f.write('{"seq": "not a number"}\n')
    session = read_session(path)
    assert len(session.estimates) == 1
    assert session.truncated_lines == 1


def test_a_directory_without_meta_is_not_a_session(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="not a streamser session"):
        read_session(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SessionError, match="not a streamser session"):
        read_session(tmp_path / "file")
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(SessionError, match="cannot read"):
        read_session(tmp_path)


def test_resolve_by_id_prefix_latest_and_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = write_session(root, "20261123-221530-aaaaaa", [])
    second = write_session(root, "20261124-080000-bbbbbb", [])
    third = write_session(root, "20261124-080000-bbbccc", [])
    (root / "20991231-000000-ffffff").mkdir()  # not a session: no meta.json

    assert resolve_session("20261123-221530-aaaaaa", root) == first
    assert resolve_session("20261123", root) == first
    assert resolve_session("20261124-080000-bbbb", root) == second
    assert resolve_session("latest", root) == third
    assert resolve_session(str(second), tmp_path / "elsewhere") == second
    with pytest.raises(SessionError, match="matches 2 sessions"):
        resolve_session("20261124", root)
    with pytest.raises(SessionError, match="no session"):
        resolve_session("20991231", root)
    with pytest.raises(SessionError, match="no sessions"):
        resolve_session("latest", tmp_path / "empty")


def test_ids_never_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_session(root, "20261123-221530-aaaaaa", [])
    outside = write_session(tmp_path, "20261123-000000-eeeeee", [])
    (root / "20261123-000000-eeeeee").symlink_to(outside)

    for bad in ["..", "...", "a.b", "-rf", ""]:
        with pytest.raises(SessionError):
            resolve_session(bad, root)
    with pytest.raises(SessionError, match="no session"):
        resolve_session("20261123-000000", root)  # only the symlink matches: ignored
    with pytest.raises(SessionError, match="not a streamser session"):
        resolve_session("../", root)


def test_list_sessions_summarises_each(tmp_path: Path) -> None:
    estimates = [make_estimate(0, 0.2, -0.5), make_estimate(1, None, None)]
    estimates.append(make_estimate(2, 0.6, 0.1))
    closed = write_session(tmp_path, "20261123-221530-aaaaaa", estimates)
    write_session(tmp_path, "20261124-080000-bbbbbb", [], closed=False)
    (tmp_path / "20261125-000000-cccccc").mkdir()
    (tmp_path / "20261125-000000-cccccc" / "meta.json").write_text("{damaged")
    (tmp_path / "not-a-session").mkdir()

    summaries = list_sessions(tmp_path)
    assert [s.session_id for s in summaries] == [
        "20261123-221530-aaaaaa",
        "20261124-080000-bbbbbb",
        "20261125-000000-cccccc",
    ]
    first, second, damaged = summaries
    assert first.n_estimates == 3
    assert first.mean_arousal == pytest.approx(0.4)
    assert first.mean_valence == pytest.approx(-0.2)
    assert first.duration_s == pytest.approx(4.0)
    assert first.clean is True
    assert first.start is not None and first.start.hour == 22
    assert first.size_bytes == sum(p.stat().st_size for p in closed.iterdir())
    assert second.clean is False
    assert second.n_estimates == 0
    assert second.mean_arousal is None
    assert damaged.clean is False
    assert damaged.start is None
    assert list_sessions(tmp_path / "missing") == []


def test_sessions_table(tmp_path: Path) -> None:
    write_session(tmp_path, "20261123-221530-aaaaaa", [make_estimate(0, 0.25, -0.5)])
    write_session(tmp_path, "20261124-080000-bbbbbb", [], closed=False)
    table = format_sessions_table(list_sessions(tmp_path)).splitlines()
    assert table[0].split()[:2] == ["ID", "START"]
    assert table[1].startswith("20261123-221530-aaaaaa  2026-11-23 22:15:30")
    assert "0.25" in table[1] and "-0.50" in table[1] and table[1].count("closed") == 1
    assert "not closed" in table[2]
    assert table[0].index("STATE") == table[1].index("closed") == table[2].index("not closed")
    assert format_sessions_table([]) == "No sessions."


REAL = {"name": "amiriparian/ExHuBERT", "kind": "hub", "revision": "b158d45ed8", "demo": False}
DEMO = {"name": "demo", "kind": "demo", "revision": None, "demo": True}


def test_sessions_table_names_the_model_and_marks_demo_sessions(tmp_path: Path) -> None:
    write_session(tmp_path, "20261123-221530-aaaaaa", [make_estimate(0, 0.5, 0.1)], model=REAL)
    write_session(tmp_path, "20261124-080000-bbbbbb", [make_estimate(0, 0.5, 0.1)], model=DEMO)
    write_session(tmp_path, "20261125-080000-cccccc", [])
    (tmp_path / "20261126-000000-dddddd").mkdir()
    (tmp_path / "20261126-000000-dddddd" / "meta.json").write_text("{damaged")
    header, real, demo, unknown, damaged = format_sessions_table(list_sessions(tmp_path)).split(
        "\n"
    )
    column = header.index("MODEL")
    assert real[column:].startswith("amiriparian/ExHuBERT@b158d45 ")
    assert demo[column:].startswith(DEMO_MARKER) and "DEMO" in DEMO_MARKER
    assert "ExHuBERT" not in demo
    assert unknown[column:].startswith("unknown model")
    assert damaged[column:].startswith("?")
    state = header.index("STATE")
    assert real[state:] == "closed" and unknown[state:] == "closed"
    assert damaged[state:] == "unreadable meta.json"
    summaries = list_sessions(tmp_path)
    assert [s.demo for s in summaries] == [False, True, False, False]
    assert summaries[0].model == "amiriparian/ExHuBERT@b158d45"


@pytest.mark.parametrize(
    ("model", "cell"),
    [
        (REAL, "amiriparian/ExHuBERT@b158d45"),
        (DEMO, DEMO_MARKER),
        ({"demo": True}, DEMO_MARKER),
        ("streamser demo model", f"{DEMO_MARKER} streamser demo model"),
        (
            {"name": "amiriparian/ExHuBERT", "kind": "demo", "demo": True},
            f"{DEMO_MARKER} amiriparian/ExHuBERT",
        ),  # random weights of the full-size architecture are still not a real model
        ({"name": "/data/models/" + "x" * 60 + "/exhubert-finetuned", "kind": "local"}, None),
        (None, "unknown model"),
    ],
)
def test_model_column(model: Any, cell: str | None) -> None:
    shown = model_column({"model": model})
    if cell is not None:
        assert shown == cell
    else:  # a long local path keeps its informative end
        assert len(shown) == 36 and shown.startswith("…") and shown.endswith("/exhubert-finetuned")


def test_delete_sessions_only_exact_ids_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    keep = write_session(root, "20261123-221530-aaaaaa", [])
    gone = write_session(root, "20261124-080000-bbbbbb", [])
    outside = write_session(tmp_path, "20261125-000000-eeeeee", [])
    (root / "20261125-000000-eeeeee").symlink_to(outside)

    for bad in ["20261124", "..", "../20261125-000000-eeeeee", str(keep), "20261125-000000-eeeeee"]:
        with pytest.raises(SessionError) as info:
            delete_sessions(root, ["20261124-080000-bbbbbb", bad])
        assert repr(bad) in str(info.value) and "nothing was deleted" in str(info.value)
    assert gone.exists() and keep.exists() and outside.exists()

    assert delete_sessions(root, ["20261124-080000-bbbbbb"]) == [gone]
    assert not gone.exists()
    assert keep.exists() and outside.exists()
