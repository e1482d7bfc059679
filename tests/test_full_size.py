"""The real-size path end to end: a full-size (668 M parameter) ExHuBERT with random weights,
saved as the published ``pytorch_model.bin`` with legacy weight-norm names, goes through the same
loader a user's download goes through (strict check, sha256, safetensors copy, memory-mapped
reload) and predicts a window. Each stage runs in a fresh process so its peak memory is its own.
What it writes (about 5.3 GB: the model twice) is deleted when the test ends, pass or fail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA_DIR, ROOT_DIR

pytestmark = pytest.mark.slow

SAVE = """
import hashlib, json, shutil, sys, torch
from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubertConfig, LEGACY_WEIGHT_NORM
out, config = sys.argv[1], sys.argv[2]
net = random_network(ExHubertConfig.from_json_file(config), seed=1)
legacy = {v: k for k, v in LEGACY_WEIGHT_NORM.items()}
torch.save({legacy.get(k, k): v for k, v in net.state_dict().items()}, out + "/pytorch_model.bin")
shutil.copy(config, out + "/config.json")
h = hashlib.sha256()
with open(out + "/pytorch_model.bin", "rb") as f:
    while b := f.read(1 << 23):
        h.update(b)
print(json.dumps({"sha256": h.hexdigest()}))
"""

LOAD = """
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
from streamser import load_model
m = load_model(sys.argv[1], compute="cpu", expected_sha256=sys.argv[2])
t1 = time.perf_counter()
x = np.random.default_rng(0).standard_normal(48_000).astype(np.float32)
p = m.predict(x)
t2 = time.perf_counter()
print(json.dumps({
    "load_s": t1 - t0, "predict_s": t2 - t1, "logits": p.logits.tolist(),
    "loaded_from": m.info.loaded_from, "status": m.info.sha256_status,
    "n_params": m.info.n_params,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def _run(code: str, *args: str, env: dict[str, str]) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied when the test ends: pytest keeps the directories of the last three
    runs, which would leave gigabytes of model files behind each time."""
    yield tmp_path
    for child in tmp_path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def test_full_size_random_model_through_the_user_loader(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    env = {**os.environ, "STREAMSER_CACHE_DIR": str(scratch / "cache")}
    model_dir = scratch / "full"
    model_dir.mkdir()
    saved = _run(SAVE, str(model_dir), str(DATA_DIR / "published_config.json"), env=env)
    size = (model_dir / "pytorch_model.bin").stat().st_size
    assert size > 2_600_000_000

    first = _run(LOAD, str(model_dir), saved["sha256"], env=env)
    assert first["status"] == "verified"
    assert first["n_params"] == 668_392_838
    assert first["loaded_from"].endswith("model.safetensors")
    second = _run(LOAD, str(model_dir), saved["sha256"], env=env)
    assert second["loaded_from"] == first["loaded_from"]
    assert np.all(np.isfinite(first["logits"]))
    np.testing.assert_allclose(second["logits"], first["logits"], atol=1e-5)
    # Near one model copy: the conversion streams tensor by tensor from a memory map.
    for run in (first, second):
        assert run["peak_rss_bytes"] < 1.5 * size + 1.0e9, run["peak_rss_bytes"]
    with capsys.disabled():
        print(
            f"\nfull-size model: first load (verify + convert) {first['load_s']:.1f} s, "
            f"peak RSS {first['peak_rss_bytes'] / 1e9:.2f} GB; "
            f"mmap reload {second['load_s']:.1f} s, "
            f"peak RSS {second['peak_rss_bytes'] / 1e9:.2f} GB; one 3 s window fp32 "
            f"{second['predict_s']:.2f} s (first run {first['predict_s']:.2f} s)"
        )
