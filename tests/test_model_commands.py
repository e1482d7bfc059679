"""``model info`` (what is here, never a download; the licence only for the published weights;
``--numerics``), ``tune`` (a table and a verdict that ``--precision auto`` follows) and
``--precision`` on the commands that run the model."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DATA_DIR
from tests.test_listen_cli import SPEECH, env_for, streamser

FIXTURE = DATA_DIR / "tiny-parametrized"


def offline_env(tmp_path: Path) -> dict[str, str]:
    """An empty Hugging Face cache that may not be filled from the network."""
    return env_for(tmp_path, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")


def test_model_info_of_an_uncached_hub_model_reports_and_downloads_nothing(
    tmp_path: Path,
) -> None:
    r = streamser("model", "info", env=offline_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "not downloaded" in r.stdout and "model fetch" in r.stdout
    assert "CC BY-NC-SA 4.0" in r.stdout
    assert not (tmp_path / "hf" / "hub").exists() or not any(
        (tmp_path / "hf" / "hub").rglob("*.bin")
    )


def test_model_info_of_other_weights_claims_no_exhubert_licence(tmp_path: Path) -> None:
    r = streamser("model", "info", "--model", str(FIXTURE), env=offline_env(tmp_path))
    assert r.returncode == 0, r.stderr
    licence = next(line for line in r.stdout.splitlines() if line.startswith("licence"))
    assert "CC BY" not in licence and "not the published ExHuBERT weights" in licence
    demo = streamser("model", "info", "--model", "demo", env=offline_env(tmp_path))
    assert "CC BY" not in demo.stdout and "random weights" in demo.stdout


def test_model_info_numerics_shows_where_fp16_would_overflow(tmp_path: Path) -> None:
    r = streamser("model", "info", "--model", str(FIXTURE), "--numerics", env=offline_env(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().endswith("over fp16")]
    assert rows and int(rows[0][0]) == 25  # the fixture's first layer past 65,504 (SPEC.md)
    assert "overflows fp16 from layer 25" in r.stdout


def test_tune_prints_a_table_and_auto_follows_its_verdict(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    r = streamser("tune", "--model", str(FIXTURE), "--no-onnx", "--budget-s", "60", env=env)
    assert r.returncode == 0, r.stderr
    table = {line.split()[0]: line for line in r.stdout.splitlines() if line[:1].isalpha()}
    assert {"fp32", "int8"} <= set(table) and any(k.startswith("half-") for k in table)
    verdict = r.stdout.strip().splitlines()[-1]
    assert "stored" in verdict
    chosen = verdict.split(": ", 1)[1].split()[0]
    stored = list((tmp_path / "cache" / "precision").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["precision"] == chosen
    info = streamser(
        "model", "info", "--model", str(FIXTURE), "--precision", "auto", "--compute", "cpu",
        env=env,
    )  # fmt: skip
    compute = next(line for line in info.stdout.splitlines() if line.startswith("compute"))
    assert chosen.split("-")[0] in compute


def test_listen_records_the_precision_path_it_ran(tmp_path: Path) -> None:
    log_dir = tmp_path / "sessions"
    r = streamser(
        "listen", "--input", str(SPEECH), "--fast", "--headless", "--model", str(FIXTURE),
        "--precision", "half", "--log-dir", str(log_dir), env=offline_env(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (session,) = log_dir.iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["compute"]["precision"] == "half-bf16"
    assert meta["config"]["model"]["precision"] == "half"
    assert meta["counters"]["half_fallbacks"] == 0
    estimates = [json.loads(line) for line in r.stdout.splitlines()]
    assert estimates and all(abs(sum(e["probs"]) - 1) < 1e-5 for e in estimates)
