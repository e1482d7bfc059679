"""``--backend onnxruntime``: same logits as the reference, one cached export, clear errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamser import load_model
from streamser.model.errors import ModelError
from streamser.model.onnx_backend import EXPORT_FILE, cache_dir_for
from tests.conftest import DATA_DIR
from tests.test_listen_cli import SPEECH, TINY, env_for, streamser

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

FIXTURE = DATA_DIR / "tiny-parametrized"
CASES = ("full_3s", "short_1_3s", "long_4s_truncated")
TOL = 1e-4


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as e:
        return {k: e[k] for k in e.files}


def exports(cache: Path) -> list[Path]:
    return sorted(cache.rglob(EXPORT_FILE))


def test_onnxruntime_matches_the_reference_logits_and_caches_one_export(
    cache: Path, expected: dict[str, np.ndarray]
) -> None:
    model = load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    assert model.backend == "onnxruntime" and model.describe() == "cpu/float32/onnxruntime"
    assert model.onnx is not None and model.onnx.export_s is not None  # exported now
    waves = [expected[f"{c}_waveform"] for c in CASES]
    batch = model.predict_batch(waves, sample_rate=16_000)
    for case, pred in zip(CASES, batch):
        np.testing.assert_allclose(pred.logits, expected[f"{case}_logits"], atol=TOL, rtol=0)
    single = model.predict(waves[0], sample_rate=16_000)
    np.testing.assert_allclose(single.logits, expected["full_3s_logits"], atol=TOL, rtol=0)
    assert len(exports(cache)) == 1
    again = load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    assert again.onnx is not None and again.onnx.export_s is None  # reused, not re-exported
    assert exports(cache) == exports(cache)[:1]
    np.testing.assert_allclose(
        again.predict(waves[0], sample_rate=16_000).logits, single.logits, atol=1e-6, rtol=0
    )


def test_a_corrupt_cached_export_is_made_again(
    cache: Path, expected: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    (path,) = exports(cache)
    path.write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING, logger="streamser"):
        model = load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    assert "exporting it again" in caplog.text
    assert model.onnx is not None and model.onnx.export_s is not None
    pred = model.predict(expected["full_3s_waveform"], sample_rate=16_000)
    np.testing.assert_allclose(pred.logits, expected["full_3s_logits"], atol=TOL, rtol=0)
    assert path.stat().st_size > 1000


def test_an_unwritable_cache_exports_for_this_run_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expected: dict[str, np.ndarray]
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    model = load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    pred = model.predict(expected["full_3s_waveform"], sample_rate=16_000)
    np.testing.assert_allclose(pred.logits, expected["full_3s_logits"], atol=TOL, rtol=0)
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary export is gone


def test_the_export_key_follows_the_weights_file(cache: Path, tmp_path: Path) -> None:
    model = load_model(str(FIXTURE), compute="cpu")
    weights = str(FIXTURE / "pytorch_model.bin")
    first = cache_dir_for(weights, model.network)
    copy = tmp_path / "other" / "pytorch_model.bin"
    copy.parent.mkdir()
    copy.write_bytes(Path(weights).read_bytes())
    assert first is not None and first == cache_dir_for(weights, model.network)
    assert cache_dir_for(str(copy), model.network) != first
    assert cache_dir_for(None, model.network) is None  # random weights: nothing cached


def test_missing_onnxruntime_is_a_one_line_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelError, match=r"pip install 'streamser\[onnx\]'"):
        load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "choose one of torch, onnxruntime"),
        ({"backend": "onnxruntime", "precision": "int8"}, "use --precision fp32"),
    ],
)
def test_bad_backend_choices_name_the_fix(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(str(FIXTURE), compute="cpu", **kwargs)


def test_listen_with_onnxruntime_logs_the_same_estimates_as_torch(tmp_path: Path) -> None:
    runs = {}
    for backend in ("torch", "onnxruntime"):
        sessions = tmp_path / backend
        r = streamser(
            "listen",
            "--input",
            str(SPEECH),
            "--fast",
            "--headless",
            "--model",
            TINY,
            "--backend",
            backend,
            "--log-dir",
            str(sessions),
            env=env_for(tmp_path),
        )
        assert r.returncode == 0, r.stderr
        (session,) = sessions.iterdir()
        meta = json.loads((session / "meta.json").read_text())
        assert meta["compute"]["backend"] == backend
        runs[backend] = [json.loads(line) for line in r.stdout.splitlines()]
    torch_rows, ort_rows = runs["torch"], runs["onnxruntime"]
    assert len(torch_rows) == len(ort_rows) > 10
    probs = np.array([[row["probs"] for row in rows] for rows in (torch_rows, ort_rows)])
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5, rtol=0)


def test_old_and_abandoned_exports_are_removed_when_exporting(cache: Path) -> None:
    model = load_model(str(FIXTURE), compute="cpu")
    weights = str(FIXTURE / "pytorch_model.bin")
    target = cache_dir_for(weights, model.network)
    assert target is not None
    dead = _dead_pid()
    leftovers = {
        "older version": target.with_name("onnx-0123456789abcdef"),
        "died mid-export": target.with_name(f"{target.name}.partial-{dead}"),
    }
    for d in leftovers.values():
        d.mkdir(parents=True)
        (d / EXPORT_FILE).write_bytes(b"x" * 100)
    running_pid = _live_other_pid()
    running = target.with_name(f"{target.name}.partial-{running_pid}")
    running.mkdir()
    load_model(str(FIXTURE), compute="cpu", backend="onnxruntime")
    assert (target / EXPORT_FILE).is_file()
    for why, d in leftovers.items():
        assert not d.exists(), why
    assert running.is_dir()  # another live process may still be writing it


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _live_other_pid() -> int:
    return os.getppid()
