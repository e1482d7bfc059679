"""Security properties: no remote code, no unsafe unpickling, no network, private files, and
command-line paths that stay where they point.

The source is scanned (text and ``ast``) for remote-code and pickle hazards. One real process,
with every socket call refused and recorded, runs ``listen`` (logging and recording on, a
permissive umask, a ``--log-dir`` with ``..`` in it), ``analyze``, ``replay`` and ``report`` on
the demo model; it must try no connection, and the session it leaves must be private. Session
ids with separators, dots or symlinks are refused by every command that takes one.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamser.cli import main
from streamser.contracts import Estimate
from streamser.session.logger import SessionLogger
from tests.conftest import ROOT_DIR
from tests.test_listen_cli import SPEECH, env_for, expected_windows

PACKAGE_DIR = ROOT_DIR / "streamser"
SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


# ------------------------------------------------------------------------------ source scans


def test_the_package_sources_are_found() -> None:
    names = {p.relative_to(PACKAGE_DIR).as_posix() for p in SOURCES}
    assert {"cli.py", "model/loading.py", "model/weights_file.py"} <= names


def remote_code_requests(source: str) -> list[int]:
    """Lines where code asks a loader to trust remote code: a ``trust_remote_code`` keyword in
    any call, or a ``"trust_remote_code": True`` entry in a dict literal. (The name may appear
    otherwise, e.g. in the set of options ``streamser.hf`` accepts from the Auto classes and
    ignores, since its loader never runs code from a checkpoint.)"""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            lines += [node.lineno for k in node.keywords if k.arg == "trust_remote_code"]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                trusted = isinstance(value, ast.Constant) and value.value is True
                named = isinstance(key, ast.Constant) and key.value == "trust_remote_code"
                lines += [node.lineno] if named and trusted else []
    return lines


def test_no_remote_code_is_ever_trusted() -> None:
    offenders = {
        str(p): lines
        for p in SOURCES
        if (lines := remote_code_requests(p.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_remote_code_scan_finds_requests() -> None:
    assert remote_code_requests("AutoModel.from_pretrained('x', trust_remote_code=True)") == [1]
    assert remote_code_requests("\nkw = {'trust_remote_code': True}") == [2]
    assert remote_code_requests("IGNORED = {'trust_remote_code', 'x'}") == []


def unsafe_torch_loads(source: str, filename: str = "<src>") -> tuple[int, list[str]]:
    """(torch.load calls found, those not passing ``weights_only=True`` literally).

    Follows ``import torch as t`` and ``from torch import load as f``; a call with ``**kwargs``
    cannot be shown safe, so it counts as unsafe.
    """
    tree = ast.parse(source, filename)
    torch_names, load_names = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
    found, unsafe = 0, []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = (
            isinstance(f, ast.Attribute)
            and f.attr == "load"
            and isinstance(f.value, ast.Name)
            and f.value.id in torch_names
        ) or (isinstance(f, ast.Name) and f.id in load_names)
        if not is_load:
            continue
        found += 1
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        ) and not any(k.arg is None for k in node.keywords)
        if not safe:
            unsafe.append(f"{filename}:{node.lineno}")
    return found, unsafe


@pytest.mark.parametrize(
    ("source", "unsafe"),
    [
        ("import torch\ntorch.load(p, weights_only=True)", 0),
        ("import torch\ntorch.load(p)", 1),
        ("import torch\ntorch.load(p, weights_only=False)", 1),
        ("import torch\ntorch.load(p, weights_only=flag)", 1),
        ("import torch as t\nt.load(p, map_location='cpu')", 1),
        ("from torch import load as l\nl(p)", 1),
        ("import torch\ntorch.load(p, **kw)", 1),
        ("import torch\ntorch.load(p, weights_only=True, **kw)", 1),
        ("import numpy as np\nnp.load(p)", 0),
    ],
)
def test_the_torch_load_scan_tells_safe_from_unsafe(source: str, unsafe: int) -> None:
    assert len(unsafe_torch_loads(source)[1]) == unsafe


def test_every_torch_load_is_weights_only() -> None:
    total, unsafe = 0, []
    for path in SOURCES:
        found, bad = unsafe_torch_loads(path.read_text(encoding="utf-8"), str(path))
        total += found
        unsafe += bad
    assert total >= 1  # the .bin checkpoint loader is there, and was seen
    assert unsafe == []


def test_no_pickle_based_loading_in_the_package() -> None:
    risky_modules = {"pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                literal_false = isinstance(node.value, ast.Constant) and node.value.value is False
                names = set() if literal_false else {"allow_pickle"}
            else:
                continue
            if names & (risky_modules | {"allow_pickle"}):
                offenders.append(f"{path}:{getattr(node, 'lineno', '?')}")
    assert offenders == []


# ------------------------------------------------------------------------------ a guarded run

GUARD = r"""
import json, socket, sys

attempts = []

def refuse(what):
    def refused(*args, **kwargs):
        attempts.append(what)
        raise OSError(f"network access refused by the test: {what}")
    return refused

def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                 "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "socket.bind"):
        attempts.append(event)
        raise OSError(f"network access refused by the test: {event}")

socket.socket.connect = refuse("socket.socket.connect")
socket.socket.connect_ex = refuse("socket.socket.connect_ex")
socket.create_connection = refuse("socket.create_connection")
socket.getaddrinfo = refuse("socket.getaddrinfo")
sys.addaudithook(audit)

from streamser.cli import main

codes = [main(argv) for argv in json.loads(sys.argv[1])]
during_run = list(attempts)
try:  # the control: the guard is live in this process
    socket.create_connection(("192.0.2.1", 9), timeout=1)
except OSError:
    pass
with open(sys.argv[2], "w") as f:
    json.dump({"codes": codes, "attempts": during_run, "control": attempts[len(during_run):]}, f)
"""


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """listen (log + record) -> analyze -> replay -> report, in one process with no network.

    The umask is 0, so only streamser's own modes can make its files private; the log
    directory is given as ``<tmp>/elsewhere/../sessions``.
    """
    tmp = tmp_path_factory.mktemp("guarded")
    (tmp / "elsewhere").mkdir()
    log_dir = f"{tmp}/elsewhere/../sessions"
    before = {p for p in tmp.rglob("*")}
    session = "latest"
    argvs = [
        ["listen", "--input", str(SPEECH), "--fast", "--headless", "--model", "demo", "--record",
         "--log-dir", log_dir],
        ["analyze", str(SPEECH), "-o", str(tmp / "out" / "offline.jsonl"), "--model", "demo"],
        ["replay", session, "--headless", "--speed", "0", "--log-dir", log_dir],
        ["report", session, "-o", str(tmp / "out" / "report.png"), "--log-dir", log_dir],
    ]  # fmt: skip
    (tmp / "out").mkdir()
    result_file = tmp / "result.json"
    env = env_for(tmp, HF_HOME=str(tmp / "hf-home"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # nothing may rely on these
        env.pop(name, None)
    r = subprocess.run(
        [sys.executable, "-c", GUARD, json.dumps(argvs), str(result_file)],
        capture_output=True, text=True, env=env, cwd=ROOT_DIR, timeout=300, umask=0,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(result_file.read_text())
    result.update(tmp=tmp, before=before, stdout=r.stdout, stderr=r.stderr)
    return result


def test_a_demo_run_makes_no_network_connection(guarded_run: dict) -> None:
    assert guarded_run["codes"] == [0, 0, 0, 0], guarded_run["stderr"]
    assert guarded_run["attempts"] == []
    assert guarded_run["control"], "the network guard was not active"
    n = expected_windows(SPEECH, 1.0, 1.0)
    rows = [x for x in guarded_run["stdout"].splitlines() if x.startswith("{")]
    assert len(rows) == 2 * n  # listen's estimates, then replay's


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_sessions_are_private_whatever_the_umask(guarded_run: dict) -> None:
    root = guarded_run["tmp"] / "sessions"
    (session,) = root.iterdir()
    assert _mode(root) == 0o700  # created by streamser
    dirs = [session, *(p for p in session.rglob("*") if p.is_dir())]
    files = [p for p in session.rglob("*") if p.is_file()]
    names = {p.relative_to(session).as_posix() for p in files}
    assert {"meta.json", "estimates.jsonl", "marks.jsonl"} <= names
    assert any(n.startswith("audio/") and n.endswith(".wav") for n in names)
    assert {oct(_mode(d)) for d in dirs} == {oct(0o700)}
    assert {f.relative_to(session).as_posix(): oct(_mode(f)) for f in files} == {
        n: oct(0o600) for n in names
    }


def test_a_log_dir_with_dot_dot_lands_where_it_points(guarded_run: dict) -> None:
    tmp = guarded_run["tmp"]
    (session,) = (tmp / "sessions").iterdir()
    assert session.resolve().parent == (tmp / "sessions").resolve()
    assert list((tmp / "elsewhere").iterdir()) == []
    new = {p for p in tmp.rglob("*")} - guarded_run["before"]
    allowed = (tmp / "sessions", tmp / "out", tmp / "result.json", tmp / "cache", tmp / "hf-home")
    stray = [p for p in new if not any(p == a or a in p.parents for a in allowed)]
    assert stray == []


# ------------------------------------------------------------------------------ session ids


@contextlib.contextmanager
def _logger_kept() -> Iterator[None]:
    log = logging.getLogger("streamser")
    saved = (list(log.handlers), log.level, log.propagate)
    try:
        yield
    finally:
        log.handlers[:], log.level, log.propagate = saved


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _logger_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def make_session(root: Path) -> Path:
    """A closed session holding one estimate, written by the real logger."""
    est = Estimate(
        seq=0, window=0, t_start_s=0.0, t_end_s=1.0, wall_time="2026-01-01T00:00:00+00:00",
        probs=(0.1, 0.1, 0.3, 0.2, 0.2, 0.1), arousal=0.5, valence=0.1, arousal_smooth=0.5,
        valence_smooth=0.1, speech=0.9, is_speech=True, compute_s=0.01, latency_s=0.1,
        skipped_windows=0, dropped_samples=0,
    )  # fmt: skip
    logger = SessionLogger(root, {"model": {"name": "demo", "demo": True}})
    logger.write_estimate(est)
    logger.close({"estimates": 1})
    return logger.path


LINK_ID = "20990101-000000-aaaaaa"
"""A symlink in the root, named like a session, pointing at a session outside it."""


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.fixture
def two_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(root, a session inside it, a session outside it at ``root/../outside/<id>``); the
    working directory is somewhere unrelated, so relative paths resolve to nothing."""
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "no-config.toml"))
    root, outside_root = tmp_path / "root", tmp_path / "outside"
    inside, outside = make_session(root), make_session(outside_root)
    (root / LINK_ID).symlink_to(outside, target_is_directory=True)
    cwd = tmp_path / "cwd" / "deeper"  # so root/../x and cwd/../x are different places
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return root, inside, outside


def _escapes(root: Path, outside: Path) -> list[str]:
    rel = f"../{outside.parent.name}/{outside.name}"
    return [
        rel,
        rel.replace("/", "\\"),
        f"{root.name}/../{outside.parent.name}/{outside.name}",
        "..",
        ".",
        f"{outside.name}/..",
        f"./{outside.name}",
        LINK_ID,
    ]


def test_sessions_delete_takes_only_plain_ids_found_in_the_root(
    two_roots: tuple[Path, Path, Path],
) -> None:
    root, inside, outside = two_roots
    link = root / LINK_ID
    kept = snapshot(outside.parent)
    for arg in [*_escapes(root, outside), str(outside), str(inside)]:
        rc, out, err = run("sessions", "delete", arg, "--log-dir", str(root))
        assert rc == 2 and out == "" and err.startswith("streamser: error: "), (arg, rc, out, err)
        assert len(err.strip().splitlines()) == 1, err
    assert inside.is_dir() and link.is_symlink() and snapshot(outside.parent) == kept
    rc, _, err = run("sessions", "delete", inside.name, "--log-dir", str(root))
    assert rc == 0 and not inside.exists(), err  # a plain id does work


@pytest.mark.parametrize("command", ["replay", "report", "mark"])
def test_session_arguments_never_reach_outside_the_root(
    two_roots: tuple[Path, Path, Path], command: str
) -> None:
    root, inside, outside = two_roots
    kept = snapshot(outside.parent)
    extra = {
        "replay": ["--headless", "--speed", "0"],
        "report": ["-o", str(root.parent / "report.png")],
        "mark": ["a note", "--at", "1.0"],
    }[command]
    for arg in _escapes(root, outside):
        rc, out, err = run(command, arg, *extra, "--log-dir", str(root))
        assert rc == 2 and out == "", (arg, rc, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert snapshot(outside.parent) == kept
    assert not (root.parent / "report.png").exists()
    rc, out, err = run(command, inside.name, *extra, "--log-dir", str(root))
    assert rc == 0, err  # while the session's own id works


def test_marks_cannot_inject_lines_into_the_log(two_roots: tuple[Path, Path, Path]) -> None:
    root, inside, _ = two_roots
    note = 'ok"}\n{"t_s": 0, "note": "forged"}\r\n'
    rc, _, err = run("mark", inside.name, note, "--at", "2.5", "--log-dir", str(root))
    assert rc == 0, err
    lines = (inside / "marks.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["note"] == note


def test_files_written_outside_sessions_are_only_those_named(
    two_roots: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, inside, _ = two_roots
    target = tmp_path / "reports" / "x" / ".." / "r.png"
    (tmp_path / "reports" / "x").mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*")}
    rc, _, err = run("report", inside.name, "-o", str(target), "--log-dir", str(root))
    assert rc == 0, err
    assert {p for p in tmp_path.rglob("*")} - before == {tmp_path / "reports" / "r.png"}
    assert os.path.getsize(tmp_path / "reports" / "r.png") > 1000
