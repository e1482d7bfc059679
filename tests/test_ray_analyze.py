"""``streamser analyze --ray`` on a Ray started by these tests (2 CPUs, loopback only, stopped
at teardown): the archive of test_archive_pool (20 files and a corrupt one) gives the rows the
in-process analysis gives; the corrupt file is reported and recorded; a second run computes
nothing; a run killed half-way resumes to the complete result, each file once; the summary
table's figures are recomputed from the window rows; and a Ray that ``analyze`` starts itself
listens on the loopback interface only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.archive_corpus import FILES, TINY_MODEL, assert_same_windows, make_archive
from tests.conftest import ROOT_DIR, require_tools
from tests.test_reliability_inputs import Run, run_in_process
from tests.test_sessions_cli import read_any

LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray's switch that makes every node address 127.0.0.1 (see session/ray_analyze.py)."""


def _test_env(work: Path) -> dict[str, str]:
    return {
        **LOOPBACK_ONLY,
        # Ray's workers import this checkout, not whatever streamser the venv points to.
        "PYTHONPATH": os.pathsep.join([str(ROOT_DIR), os.environ.get("PYTHONPATH", "")]),
        "STREAMSER_CONFIG": str(work / "no-config.toml"),
        "STREAMSER_CACHE_DIR": str(work / "cache"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("ray")
    env = pytest.MonkeyPatch()
    for k, v in _test_env(path).items():
        env.setenv(k, v)
    yield path
    env.undo()


@pytest.fixture(scope="module")
def cluster(work: Path) -> Iterator[str]:
    """A Ray of 2 CPUs on this machine for the module; its address."""
    import ray

    context = ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, log_to_driver=False
    )
    try:
        address = str(context.address_info["gcs_address"])
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def archive(work: Path) -> tuple[Path, list[Path], Path]:
    files, corrupt = make_archive(work / "archive")
    return work / "archive", files, corrupt


@pytest.fixture(scope="module")
def reference(work: Path, archive: tuple[Path, list[Path], Path]) -> list[dict[str, Any]]:
    """The archive analysed in this process, file after file."""
    out = work / "reference.jsonl"
    r = analyze(str(archive[0]), "-o", str(out), "--workers", "0")
    assert r.returncode == 0, r.stderr
    return read_any(out)


def analyze(*args: str) -> Run:
    return run_in_process("analyze", *args, "--model", TINY_MODEL)


@pytest.fixture(scope="module")
def first_run(work: Path, cluster: str, archive: tuple[Path, list[Path], Path]) -> tuple[Run, Path]:
    out = work / "result"
    return analyze(str(archive[0]), "--ray", cluster, "-o", str(out)), out


def windows_table(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "windows").to_pylist()


def summary_table(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "summary").to_pylist()


def test_ray_gives_the_in_process_rows_and_reports_the_corrupt_file(
    first_run: tuple[Run, Path],
    reference: list[dict[str, Any]],
    archive: tuple[Path, list[Path], Path],
) -> None:
    r, out = first_run
    assert r.returncode == 0, r.stderr
    _, files, corrupt = archive
    rows = windows_table(out)
    assert_same_windows(rows, reference)
    assert f"skipped {corrupt}" in r.stderr and "1 unreadable file(s) skipped" in r.stderr
    assert sorted(s["file"] for s in summary_table(out)) == sorted(str(f) for f in files)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(f for m in manifest for f in m["files"]) == sorted(str(f) for f in files)
    assert [f["file"] for m in manifest for f in m["failed"]] == [str(corrupt)]
    meta = json.loads((out / "meta.json").read_text())
    status = {i["file"]: i["status"] for i in meta["inputs"]}
    assert status[str(corrupt)] == "skipped" and list(status.values()).count("done") == FILES
    assert meta["model"]["name"] == TINY_MODEL and meta["batch"] == 8
    assert meta["runs"][-1]["ray"]["actors"] == 1


def test_a_second_run_computes_nothing_new(
    first_run: tuple[Run, Path], archive: tuple[Path, list[Path], Path], cluster: str
) -> None:
    _, out = first_run
    parts = sorted(p.name for p in (out / "windows").iterdir())
    before = windows_table(out)
    again = analyze(str(archive[0]), "--ray", cluster, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr and "1 could not be read" in again.stderr
    assert sorted(p.name for p in (out / "windows").iterdir()) == parts
    assert windows_table(out) == before


def test_the_summary_table_is_recomputed_from_the_window_rows(
    first_run: tuple[Run, Path],
) -> None:
    _, out = first_run
    rows = windows_table(out)
    summaries = summary_table(out)
    assert len(summaries) == FILES
    hop_s = 1.0
    for s in summaries:
        mine = [r for r in rows if r["file"] == s["file"] and r["stream"] == s["stream"]]
        speech = [r for r in mine if r["is_speech"]]
        assert s["windows"] == len(mine) and s["speech_windows"] == len(speech)
        assert s["duration_s"] == pytest.approx(sf.info(s["file"]).duration, abs=1e-4)
        assert s["speech_s"] == pytest.approx(len(speech) * hop_s)
        if not speech:
            assert s["mean_arousal"] is None and s["share_p0"] is None
            continue
        for name in ("arousal", "valence"):
            values = np.array([r[name] for r in speech])
            assert s[f"mean_{name}"] == pytest.approx(values.mean(), abs=1e-12)
            assert s[f"sd_{name}"] == pytest.approx(values.std(), abs=1e-12)
        top = [int(np.argmax([r[f"p{i}"] for i in range(6)])) for r in speech]
        shares = [s[f"share_p{k}"] for k in range(6)]
        assert shares == pytest.approx([top.count(k) / len(top) for k in range(6)])
        assert sum(shares) == pytest.approx(1.0)
    assert any(s["speech_windows"] for s in summaries)


def test_a_run_killed_half_way_resumes_to_the_complete_result(
    work: Path, cluster: str, archive: tuple[Path, list[Path], Path], reference: list[dict]
) -> None:
    root, files, _ = archive
    out = work / "killed.parquet"
    manifest = work / ".killed.parquet.parts" / "manifest.jsonl"
    command = [sys.executable, "-m", "streamser", "analyze", str(root), "--ray", cluster]
    proc = subprocess.Popen(
        [*command, "-o", str(out), "--model", TINY_MODEL],
        env={**os.environ, **_test_env(work)}, cwd=ROOT_DIR,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        done: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            done = [f for m in _manifest(manifest) for f in m["files"]]
            if done:
                break
            time.sleep(0.05)  # polling the manifest for a condition, with a deadline
        assert done, f"no file finished in time: {proc.stderr.read() if proc.stderr else ''}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert 0 < len(done) < FILES, done  # killed half-way, not at the end
    assert not out.exists()

    r = analyze(str(root), "--ray", cluster, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert f"resuming: {len(done)}" in r.stderr
    rows = pq.read_table(out).to_pylist()
    keys = [(row["file"], row["stream"], row["window"]) for row in rows]
    assert len(keys) == len(set(keys))  # each window once
    assert_same_windows(rows, reference)
    summaries = pq.read_table(out.with_name("killed.summary.parquet")).to_pylist()
    assert sorted(s["file"] for s in summaries) == sorted(str(f) for f in files)


def _manifest(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


# ----------------------------------------------------------------------------- loopback only

PROBE = r"""
import json, os, re, subprocess
from pathlib import Path
from streamser.config import AnalyzeConfig
from streamser.session.ray_analyze import _ray_session

def descendants(pid):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {pid}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found

with _ray_session(AnalyzeConfig(ray="local", output="x.parquet")) as cluster:
    ours = descendants(os.getpid())
    lines = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout.splitlines()
    mine = [l.split()[3] for l in lines if any(int(p) in ours for p in re.findall(r"pid=(\d+)", l))]
    print(json.dumps({"address": cluster.address, "listening": mine}))
"""


def test_a_ray_started_by_analyze_listens_on_loopback_only(tmp_path: Path) -> None:
    """Every socket that the Ray started by ``analyze`` (and this process) listens on is bound
    to 127.0.0.1, even without the switch in the environment."""
    require_tools("ss")
    env = {k: v for k, v in os.environ.items() if k not in LOOPBACK_ONLY}
    env["PYTHONPATH"] = str(ROOT_DIR)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["address"].startswith("127.0.0.1:")
    listening = result["listening"]
    assert len(listening) >= 3, listening  # the GCS, the raylet, the workers at least
    assert all(re.match(r"^(\[::ffff:)?127\.0\.0\.1\]?:\d+$", a) for a in listening), listening


# ----------------------------------------------------------------------------- user mistakes


def test_without_ray_installed_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from tests.test_reliability_inputs import assert_one_line_error

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16_000, dtype=np.float32), 16_000)
    r = analyze(str(wav), "--ray", "-o", str(tmp_path / "out.parquet"))
    assert_one_line_error(r, "pip install 'streamser[ray]'")
    r = analyze(str(wav), "--ray", "-o", str(tmp_path / "out.csv"))
    assert_one_line_error(r, "--ray writes Parquet")
    r = analyze(str(wav), "--actors", "2", "-o", str(tmp_path / "out.csv"))
    assert_one_line_error(r, "--actors needs --ray")


def test_per_channel_streams_on_ray_equal_the_local_ones(work: Path, cluster: str) -> None:
    x, rate = sf.read(ROOT_DIR / "assets" / "speech.wav", dtype="float32")
    folder = work / "pairs"
    folder.mkdir()
    for k in range(2):
        pair = np.stack([x[k * rate : (k + 4) * rate], 0.3 * x[(k + 5) * rate : (k + 9) * rate]], 1)
        sf.write(folder / f"pair{k}.flac", pair, rate)
    local, remote = work / "pairs-local.jsonl", work / "pairs-ray"
    args = ("--per-channel", "--stream-names", "alice,bob")
    assert analyze(str(folder), "-o", str(local), *args).returncode == 0
    r = analyze(str(folder), "--ray", cluster, "-o", str(remote), *args)
    assert r.returncode == 0, r.stderr
    rows = windows_table(remote)
    assert {row["stream"] for row in rows} == {"alice", "bob"}
    assert_same_windows(rows, read_any(local))
    assert sorted((s["file"], s["stream"]) for s in summary_table(remote)) == sorted(
        (str(folder / f"pair{k}.flac"), name) for k in range(2) for name in ("alice", "bob")
    )
