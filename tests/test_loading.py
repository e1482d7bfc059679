"""Loading weights: local directories, a simulated offline HF cache, the one-time sha256 check,
the safetensors fast-start copy, and a clear one-line error for each way a model can be wrong."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamser.model import loading
from streamser.model.errors import ModelError
from streamser.model.loading import load_network
from tests.conftest import DATA_DIR, ROOT_DIR

TINY = DATA_DIR / "tiny-parametrized"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "streamser-cache"
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(cache))
    return cache


def copy_tiny(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.json", "pytorch_model.bin"):
        shutil.copy(TINY / name, dst / name)
    return dst


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_load_converts_then_later_loads_memory_map_without_rehashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = copy_tiny(tmp_path / "m")
    _, first = load_network(str(d), expected_sha256=sha256(d / "pytorch_model.bin"))
    assert first.sha256_status == "verified"
    assert first.loaded_from is not None and first.loaded_from.endswith("model.safetensors")
    assert Path(first.loaded_from).is_file()
    ref, _ = load_network(str(TINY))

    def no_hashing(path: Path) -> str:
        raise AssertionError("a later start must not hash the weights again")

    monkeypatch.setattr(loading, "sha256_file", no_hashing)
    model, second = load_network(str(d), expected_sha256=sha256(d / "pytorch_model.bin"))
    assert second.loaded_from == first.loaded_from
    assert second.sha256_status == "verified" and second.sha256 == first.sha256
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k


def test_sha256_mismatch_names_the_opt_out_flag(tmp_path: Path) -> None:
    d = copy_tiny(tmp_path / "m")
    with pytest.raises(ModelError, match="--no-verify") as e:
        load_network(str(d), expected_sha256="0" * 64)
    assert "\n" not in str(e.value)
    _, info = load_network(str(d), expected_sha256="0" * 64, verify=False)
    assert info.sha256_status.startswith("skipped")


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    d = copy_tiny(tmp_path / "m")
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    del sd["classifier.bias"]
    sd["extra.head.weight"] = torch.zeros(2)
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(ModelError) as e:
        load_network(str(d))
    msg = str(e.value)
    assert "missing" in msg and "classifier.bias" in msg
    assert "unexpected" in msg and "extra.head.weight" in msg


def test_wrong_architecture_reports_shapes(tmp_path: Path) -> None:
    d = copy_tiny(tmp_path / "m")
    full = (DATA_DIR / "published_config.json").read_text()
    (d / "config.json").write_text(full)  # 1024-wide config, 32-wide weights
    with pytest.raises(ModelError, match="wrong shape"):
        load_network(str(d))


def test_fp16_weights_are_accepted_and_cast(tmp_path: Path) -> None:
    d = copy_tiny(tmp_path / "m")
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    torch.save({k: v.half() for k, v in sd.items()}, d / "pytorch_model.bin")
    model, _ = load_network(str(d))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    d = copy_tiny(tmp_path / "m")
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_network(str(d))


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing", "does not exist"),
        ("file", "not a directory"),
        ("no-config", "no config.json"),
        ("no-weights", "neither"),
    ],
)
def test_bad_model_paths(tmp_path: Path, setup: str, match: str) -> None:
    target = tmp_path / "m"
    if setup == "file":
        target.write_text("x")
    elif setup == "no-config":
        copy_tiny(target)
        (target / "config.json").unlink()
    elif setup == "no-weights":
        copy_tiny(target)
        (target / "pytorch_model.bin").unlink()
    with pytest.raises(ModelError, match=match):
        load_network(str(target))


def test_local_safetensors_directory_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    d = tmp_path / "st"
    d.mkdir()
    shutil.copy(TINY / "config.json", d / "config.json")
    sd = torch.load(TINY / "pytorch_model.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "model.safetensors"))
    model, info = load_network(str(d))
    assert info.loaded_from == str(d / "model.safetensors")
    ref, _ = load_network(str(TINY))
    x = torch.randn(1, 48_000)
    assert torch.allclose(model(x), ref(x), atol=1e-6)


def test_unwritable_cache_falls_back_to_the_original_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(blocker / "cache"))  # binds root too
    _, info = load_network(str(TINY))
    assert info.loaded_from == str(TINY / "pytorch_model.bin")


def test_no_space_for_the_copy_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        free = 1024

    monkeypatch.setattr(loading.shutil, "disk_usage", lambda p: Usage())
    _, info = load_network(str(TINY))
    assert info.loaded_from == str(TINY / "pytorch_model.bin")


def make_hf_cache(root: Path, repo: str, blob_name: str | None = None) -> Path:
    """A Hugging Face hub cache laid out as huggingface_hub writes it (blobs + snapshot links)."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    blobs, snap = repo_dir / "blobs", repo_dir / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for name in ("config.json", "pytorch_model.bin"):
        data = (TINY / name).read_bytes()
        blob = hashlib.sha256(data).hexdigest() if name.endswith(".bin") else "c" * 40
        if name.endswith(".bin") and blob_name is not None:
            blob = blob_name
        (blobs / blob).write_bytes(data)
        os.symlink(os.path.relpath(blobs / blob, snap), snap / name)
    return root


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamser", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT_DIR,
        timeout=120,
    )


def test_offline_hf_cache_load_verifies_against_the_blob_hash(tmp_path: Path) -> None:
    hub = make_hf_cache(tmp_path / "hub", "someone/tiny-exhubert")
    env = {
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "STREAMSER_CACHE_DIR": str(tmp_path / "sc"),
    }
    r = run_cli("model", "info", "--model", "someone/tiny-exhubert", "--revision", COMMIT, env=env)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and "488,062" in r.stdout and "cpu/float32" in r.stdout
    assert str(hub) in r.stdout


def test_offline_hf_cache_with_corrupt_blob_fails_with_one_line(tmp_path: Path) -> None:
    hub = make_hf_cache(tmp_path / "hub", "someone/tiny-exhubert", blob_name="f" * 64)
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "STREAMSER_CACHE_DIR": str(tmp_path)}
    r = run_cli("model", "info", "--model", "someone/tiny-exhubert", "--revision", COMMIT, env=env)
    assert r.returncode == 2
    assert "--no-verify" in r.stderr and "Traceback" not in r.stderr


def test_fetch_without_hub_access_is_one_clear_line(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    r = run_cli("model", "fetch", env=env)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0] and "Traceback" not in r.stderr


def test_model_import_does_not_pull_ui_or_audio_device_packages() -> None:
    code = (
        "import sys; import streamser.model; from streamser import load_model; "
        "m = load_model('demo', compute='cpu'); "
        "bad = [k for k in sys.modules if k.split('.')[0] in "
        "('textual', 'sounddevice', 'soundfile', 'rich')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
