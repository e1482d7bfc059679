"""The one configuration builder: defaults < config file < flags, one rule per setting, and a
one-line error with exit code 2 for every bad value, wherever it was written."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamser.cli import build_parser, main
from streamser.config import (
    FILE_KEYS,
    SETTINGS,
    AnalyzeConfig,
    ConfigError,
    ListenConfig,
    LogConfig,
    ModelConfig,
)
from streamser.constants import MAX_HOP_S, MIN_HOP_S
from streamser.settings import build_config, read_config_file
from tests.conftest import ROOT_DIR

SPEECH = ROOT_DIR / "assets" / "speech.wav"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config file (absent until a test writes it)."""
    path = tmp_path / "config.toml"
    monkeypatch.setenv("STREAMSER_CONFIG", str(path))
    return path


def flags(*argv: str) -> dict[str, Any]:
    """A command line as the command handlers receive it."""
    return vars(build_parser().parse_args(list(argv)))


@contextlib.contextmanager
def logger_kept() -> Iterator[None]:
    log = logging.getLogger("streamser")
    saved = (list(log.handlers), log.level, log.propagate)
    try:
        yield
    finally:
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def run(*argv: str) -> tuple[int, str, str]:
    """``streamser ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with logger_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:  # argparse's own usage errors
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def error_of(*argv: str) -> str:
    """The one line a refused command prints (exit code 2)."""
    rc, _, err = run(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- precedence


def test_defaults_then_file_then_flags() -> None:
    assert build_config(ListenConfig, flags("listen"), file={}).windows.hop_s == 1.0
    file = {"hop": 0.5, "smooth_s": 2, "model": "demo", "vad": False}
    from_file = build_config(ListenConfig, flags("listen"), file=file)
    assert from_file.windows.hop_s == 0.5 and from_file.windows.smooth_s == 2.0
    assert from_file.model.model == "demo" and from_file.windows.vad is False
    both = build_config(ListenConfig, flags("listen", "--hop", "2", "--model", "x"), file=file)
    assert both.windows.hop_s == 2.0 and both.model.model == "x"
    assert both.windows.smooth_s == 2.0  # a flag left unset overrides nothing


def test_switches_left_out_keep_the_files_setting() -> None:
    file = {"log": False, "record": True, "vad": False}
    cfg = build_config(ListenConfig, flags("listen"), file=file)
    assert (cfg.logging.log, cfg.logging.record, cfg.windows.vad) == (False, True, False)
    cfg = build_config(ListenConfig, flags("listen", "--no-log", "--no-vad"), file={})
    assert (cfg.logging.log, cfg.windows.vad) == (False, False)
    assert (
        build_config(ListenConfig, flags("listen", "--full-windows-only"), file={}).windows.first_s
        == 3.0
    )


def test_the_config_files_compute_is_not_overridden_by_a_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` once set ``--compute auto`` before the file was read, so the file never won."""
    config_file.write_text('[listen]\ncompute = "cpu"\n')
    seen: list[ListenConfig] = []

    def fake_listen(args: argparse.Namespace) -> int:
        seen.append(build_config(ListenConfig, vars(args)))
        return 0

    import streamser.commands.listen as listen_cmd

    monkeypatch.setattr(listen_cmd, "listen", fake_listen)
    assert run("listen", "--headless")[0] == 0
    assert run("listen", "--headless", "--compute", "mps")[0] == 0
    assert [c.model.compute for c in seen] == ["cpu", "mps"]


def test_analyze_honours_the_config_file() -> None:
    file = {"hop": 0.5, "vad_threshold": 0.7, "model": "demo", "compute": "cpu"}
    cfg = build_config(AnalyzeConfig, flags("analyze", "x.wav", "-o", "out.csv"), file=file)
    assert cfg.windows.hop_s == 0.5 and cfg.windows.vad_threshold == 0.7
    assert cfg.model == ModelConfig(model="demo", compute="cpu")
    assert cfg.batch is None and cfg.output == "out.csv"  # None: sized for the device
    cfg = build_config(
        AnalyzeConfig, flags("analyze", "x", "-o", "o.jsonl", "--batch", "3"), file={}
    )
    assert cfg.batch == 3


def test_one_section_alone() -> None:
    assert (
        build_config(ModelConfig, flags("model", "info"), file={"compute": "cpu"}).compute == "cpu"
    )
    assert build_config(LogConfig, {}, file={"log_dir": "/x"}).log_dir == "/x"


def test_home_is_expanded_in_every_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = build_config(ListenConfig, flags("listen", "--input", "~/a.wav"), file={"log_dir": "~/s"})
    assert cfg.logging.log_dir == f"{tmp_path}/s" and cfg.audio.input_path == f"{tmp_path}/a.wav"
    cfg = build_config(ListenConfig, flags("listen", "--log-dir", "~/t"), file={})
    assert cfg.logging.log_dir == f"{tmp_path}/t"
    out = build_config(AnalyzeConfig, flags("analyze", "x", "-o", "~/o.csv"), file={}).output
    assert out == f"{tmp_path}/o.csv"


def test_the_file_is_checked_when_read(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text('hop = 2\ndevice = 3\n[listen]\nlog_dir = "~/x"\n')
    settings = read_config_file(config_file)
    assert settings["hop"] == 2.0 and isinstance(settings["hop"], float)
    assert settings["device"] == "3"  # an index written as a number
    assert settings["log_dir"] == os.path.expanduser("~/x")


def test_every_file_key_is_a_setting_and_every_setting_has_a_rule() -> None:
    assert set(FILE_KEYS) == {
        *("device", "samplerate", "channels", "model", "revision", "compute", "precision"),
        *("backend", "hop", "smooth_s", "vad", "vad_threshold", "log_dir", "log", "record"),
        *("per_channel", "streams", "stream_names"),
    }
    parser_dests = {a.dest for p in _subparsers() for a in p._actions}
    for s in SETTINGS:
        assert s.dest in parser_dests, f"{s.name}: no flag has dest {s.dest!r}"


def _subparsers() -> list[argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices.values())


# ----------------------------------------------------------------------------- bad values

NUMBERS = ["nan", "inf", "-inf", "-1"]

BAD_FLAGS: list[tuple[str, str]] = [
    *[("--hop", v) for v in [*NUMBERS, "0", str(MIN_HOP_S * 0.99), str(MAX_HOP_S + 1)]],
    *[("--smooth-s", v) for v in NUMBERS],
    *[("--vad-threshold", v) for v in [*NUMBERS, "1.01"]],
]


@pytest.mark.parametrize("command", ["listen", "analyze"])
@pytest.mark.parametrize(("flag", "value"), BAD_FLAGS)
def test_bad_values_are_one_line_naming_the_flag_and_the_range(
    config_file: Path, command: str, flag: str, value: str
) -> None:
    argv = ["listen", "--headless", "--input", str(SPEECH), "--model", "demo"]
    if command == "analyze":
        argv = [
            "analyze",
            str(SPEECH),
            "-o",
            str(config_file.parent / "o.jsonl"),
            "--model",
            "demo",
        ]
    line = error_of(*argv, f"{flag}={value}")
    assert line.startswith("streamser: error: ") and f"{flag} " in line and "use " in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1.5", "x"])
def test_bad_batch_sizes_are_one_line(config_file: Path, value: str) -> None:
    """``--batch 0`` once looped for ever."""
    out = str(config_file.parent / "o.jsonl")
    line = error_of("analyze", str(SPEECH), "-o", out, "--batch", value)
    assert "--batch" in line and ("1 or more" in line or "invalid int" in line), line


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hop = nan", "hop = nan is out of range: use 0.05 to 60 seconds"),
        ("hop = inf", "hop = inf"),
        ("hop = 0", "hop = 0.0"),
        ("hop = 1e9", "hop = 1000000000.0"),
        ("smooth_s = -inf", "smooth_s = -inf"),
        ("smooth_s = nan", "smooth_s = nan"),
        ("vad_threshold = 2", "vad_threshold = 2.0"),
        ("vad_threshold = -0.5", "vad_threshold = -0.5"),
        ('compute = "tpu"', 'compute = "tpu" is not a choice: use auto, cpu, cuda or mps'),
        ('backend = "tf"', "backend"),
        ('precision = "int4"', "precision"),
        ("samplerate = true", "samplerate = true must be a whole number"),
        ("samplerate = 44100.5", "samplerate"),
        ('hop = "1"', 'hop = "1" must be a number'),
        ("vad = 1", "vad = 1 must be true or false"),
        ("hopp = 1", "unknown setting(s) hopp"),
    ],
)
@pytest.mark.parametrize("command", ["listen", "analyze"])
def test_bad_config_file_values_are_one_line_naming_the_key(
    config_file: Path, text: str, needle: str, command: str
) -> None:
    config_file.write_text(f"[listen]\n{text}\n")
    argv = ["listen", "--headless", "--input", str(SPEECH)]
    if command == "analyze":
        argv = ["analyze", str(SPEECH), "-o", str(config_file.parent / "o.jsonl")]
    line = error_of(*argv)
    assert f"config file {config_file}" in line and needle in line, line


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"listen = 3\n", "listen must be a table"),
        (b'listen = "hop"\n', "listen must be a table"),
        (b"\xff\xfe[listen]\nhop = 1\n", "is not UTF-8"),
        (b"[listen\nhop = 1\n", "is not valid TOML"),
        (b"[listen]\nhop = 1\nhop = 2\n", "is not valid TOML"),
    ],
)
def test_a_broken_config_file_is_one_line(config_file: Path, content: bytes, needle: str) -> None:
    config_file.write_bytes(content)
    for argv in (["config"], ["listen", "--headless"], ["analyze", "x", "-o", "o.csv"]):
        line = error_of(*argv)
        assert needle in line and str(config_file) in line, line


def test_a_directory_as_config_file_is_one_line(config_file: Path) -> None:
    config_file.mkdir()
    assert "cannot read config file" in error_of("config")


def test_direct_construction_follows_the_same_rules() -> None:
    from streamser.config import WindowConfig

    for bad in (math.nan, math.inf, 0.0, MAX_HOP_S * 2):
        with pytest.raises(ConfigError, match="--hop"):
            WindowConfig(hop_s=bad).validate()
    with pytest.raises(ConfigError, match="--batch"):
        AnalyzeConfig(batch=0).validate()
    with pytest.raises(ConfigError, match="--compute"):
        ModelConfig(compute="tpu").validate()


# ----------------------------------------------------------------------------- streamser config


def test_config_prints_the_files_keys_and_the_sessions_directory(
    config_file: Path, tmp_path: Path
) -> None:
    config_file.write_text(f'[listen]\nhop = 0.5\nlog_dir = "{tmp_path}/s"\n')
    rc, out, err = run("config")
    assert rc == 0, err
    header, body = out.split("\n{", 1)
    assert f"config file: {config_file} (found)" in header
    assert f"sessions directory: {tmp_path}/s" in header
    values = json.loads("{" + body)
    assert set(values) == set(FILE_KEYS) and values["hop"] == 0.5
    assert "hop_s" not in out and "sample_rate_hz" not in out


def test_config_without_a_file_names_the_default_sessions_directory(config_file: Path) -> None:
    from streamser.session.files import default_sessions_root

    rc, out, _ = run("config")
    assert (
        rc == 0 and "not present" in out and f"sessions directory: {default_sessions_root()}" in out
    )


# ----------------------------------------------------------------------------- start-up


def test_help_imports_no_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        "from streamser.cli import main\n"
        "for argv in (['--help'], ['listen', '--help'], ['analyze', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'textual', 'sounddevice') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, timeout=60
    )
    assert r.returncode == 0 and r.stderr.strip() == "[]", r.stderr
