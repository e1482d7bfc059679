"""``benchmarks/gpu_check.py``: the CPU smoke run in CI, the full run where there is a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_DIR

SCRIPT = ROOT_DIR / "benchmarks" / "gpu_check.py"
SECTIONS = (
    "environment",
    "fixture_parity",
    "half_fixture",
    "half_network",
    "guard",
    "headroom",
    "graphs",
    "latency",
    "throughput",
)


def run_check(out: Path, *args: str, timeout: int) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=timeout,
    )
    assert out.is_file(), r.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert r.returncode == (0 if report["passed"] else 1), r.stderr[-3000:]
    return report


def test_cpu_smoke_run_writes_every_section(tmp_path: Path) -> None:
    report = run_check(tmp_path / "check.json", "--device", "cpu", "--tiny", timeout=300)
    sections = report["sections"]
    assert tuple(sections) == SECTIONS
    for name, entry in sections.items():
        assert entry["status"] in ("passed", "measured", "skipped"), (name, entry)
        assert entry["seconds"] >= 0 and entry["peak_memory_bytes"] >= 0
    assert sections["graphs"]["status"] == "skipped"
    assert sections["graphs"]["note"] == "skipped: no CUDA"
    assert sections["latency"]["result"]["graphed"] == "skipped: no CUDA"

    parity = sections["fixture_parity"]
    assert parity["status"] == "passed"
    assert set(parity["result"]["max_abs_logit_diff"]) == {
        "full_3s",
        "short_1_3s",
        "long_4s_truncated",
    }
    assert parity["result"]["worst"] <= 1e-4
    guard = sections["guard"]["result"]
    assert guard["recomputed_rows"] == 1 and guard["recomputed_vs_fp32_max_abs_logit_diff"] <= 1e-5
    env = sections["environment"]["result"]
    assert env["torch"] and "tf32_matmul" in env["math_flags_at_start"]
    assert env["math_flags_runtime"]["allow_fp16_reduced_precision_reduction"] is False
    assert sections["headroom"]["result"]["fixture_fp32"]["first_overflow_layer"] is not None
    assert all(v > 0 for v in sections["throughput"]["result"]["windows_per_s"].values())

    assert report["checks"]["fixture_parity"] is True and report["checks"]["graphs"] is None
    assert report["checks"]["latency"] is None and report["targets_met"] is None
    assert report["passed"] is True and report["errors"] == []
    assert report["total_s"] < 60


@pytest.mark.requires_cuda
def test_full_run_on_a_gpu(tmp_path: Path) -> None:
    """Every check passes on the full-size network, graphs included, within the deadline.
    The speed targets are recorded (``targets_met``) but not asserted: they depend on the card."""
    report = run_check(tmp_path / "check.json", timeout=600)
    assert report["errors"] == [], {n: report["sections"][n] for n in report["errors"]}
    for name in ("fixture_parity", "half_fixture", "half_network", "guard", "graphs"):
        assert report["checks"][name] is True, (name, report["sections"][name])
    assert report["passed"] is True
    assert report["checks"]["latency"] in (True, False)
    assert report["checks"]["throughput"] in (True, False)
    assert report["sections"]["graphs"]["result"]["pool_reserved_bytes"] > 0
    assert report["total_s"] < 300
