"""The network reproduces the reference implementation's preprocessing and logits exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamser import load_model
from streamser.model.exhubert import LEGACY_WEIGHT_NORM, ExHubertConfig, build_on_meta
from streamser.model.preprocess import preprocess
from tests.conftest import DATA_DIR

CASES = ("full_3s", "short_1_3s", "long_4s_truncated")
TOL = 1e-4


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(DATA_DIR / "tiny-parametrized" / "expected.npz") as e:
        return {k: e[k] for k in e.files}


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights saved under the legacy weight_g / weight_v names."""
    src = DATA_DIR / "tiny-parametrized"
    d = tmp_path_factory.mktemp("tiny-legacy")
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    inverse = {v: k for k, v in LEGACY_WEIGHT_NORM.items()}
    legacy = {inverse.get(k, k): v for k, v in sd.items()}
    assert set(inverse.values()) <= set(legacy)
    torch.save(legacy, d / "pytorch_model.bin")
    (d / "config.json").write_bytes((src / "config.json").read_bytes())
    return d


@pytest.mark.parametrize("case", CASES)
def test_preprocessing_matches_reference(expected: dict[str, np.ndarray], case: str) -> None:
    got = preprocess(expected[f"{case}_waveform"])
    assert got.shape == (48_000,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected[f"{case}_input_values"], atol=TOL, rtol=0)


@pytest.mark.parametrize("naming", ["parametrized", "legacy"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_logits_match_reference_single_and_batched(
    expected: dict[str, np.ndarray], legacy_dir: Path, naming: str, attention: str
) -> None:
    path = DATA_DIR / "tiny-parametrized" if naming == "parametrized" else legacy_dir
    model = load_model(str(path), compute="cpu")
    model.network.set_attention(attention)
    for case in CASES:
        pred = model.predict(expected[f"{case}_waveform"], sample_rate=16_000)
        np.testing.assert_allclose(pred.logits, expected[f"{case}_logits"], atol=TOL, rtol=0)
    batch = model.predict_batch([expected[f"{c}_waveform"] for c in CASES], sample_rate=16_000)
    for case, pred in zip(CASES, batch):
        np.testing.assert_allclose(pred.logits, expected[f"{case}_logits"], atol=TOL, rtol=0)


def test_probabilities_and_derived_affect(expected: dict[str, np.ndarray]) -> None:
    model = load_model(str(DATA_DIR / "tiny-parametrized"), compute="cpu")
    pred = model.predict(expected["full_3s_waveform"])
    logits = expected["full_3s_logits"].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    np.testing.assert_allclose(pred.probs, p, atol=1e-5)
    assert abs(pred.probs.sum() - 1.0) < 1e-6
    assert pred.arousal == pytest.approx(p[3] + p[4] + p[5], abs=1e-5)
    assert pred.valence == pytest.approx((p[2] + p[5]) - (p[0] + p[3]), abs=1e-5)
    assert pred.class_names[3] == "high / negative"


def test_predict_resamples_other_rates(expected: dict[str, np.ndarray]) -> None:
    from streamser.audio.resample import resample_whole

    model = load_model(str(DATA_DIR / "tiny-parametrized"), compute="cpu")
    x16 = expected["full_3s_waveform"]
    x48 = resample_whole(x16, 16_000, 48_000)
    direct = model.predict(resample_whole(x48, 48_000, 16_000), sample_rate=16_000)
    via_predict = model.predict(x48, sample_rate=48_000)
    np.testing.assert_allclose(via_predict.logits, direct.logits, atol=1e-5)
    stereo = np.stack([x16, x16], axis=1)
    np.testing.assert_allclose(model.predict(stereo).logits, model.predict(x16).logits, atol=1e-6)


def test_full_size_architecture_matches_published_manifest() -> None:
    cfg = ExHubertConfig.from_json_file(DATA_DIR / "published_config.json")
    model = build_on_meta(cfg)
    manifest = json.loads((DATA_DIR / "state_dict_manifest.json").read_text())
    want = {name: tuple(shape) for name, shape in manifest["tensors"]}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert have == want
    assert len(have) == manifest["n_tensors"] == 906
    assert sum(int(np.prod(s)) for s in have.values()) == manifest["n_params"] == 668_392_838


def test_demo_model_is_deterministic_and_labelled() -> None:
    a = load_model("demo", compute="cpu")
    b = load_model("demo", compute="cpu")
    x = np.random.default_rng(3).standard_normal(30_000).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x).logits, b.predict(x).logits)
    assert a.demo and a.info.demo
    assert "random weights" in a.info.sha256_status
    assert a.network.config.num_hidden_layers == 48


def test_fp32_recompute_on_a_half_model_is_exact_fp32(expected: dict[str, np.ndarray]) -> None:
    """A half model keeps its fp32 weights as they were: its fp32 pass (the guard's recompute)
    is the fp32 model's, bit for bit, and matches the reference. (Guard and accuracy of the
    half path itself: tests/test_precision.py.)"""
    x = torch.from_numpy(np.stack([expected[f"{c}_input_values"] for c in CASES]))
    fp32 = load_model(str(DATA_DIR / "tiny-parametrized"), compute="cpu", precision="fp32")
    half = load_model(str(DATA_DIR / "tiny-parametrized"), compute="cpu", precision="half-fp16")
    assert all(p.dtype == torch.float32 for p in half.network.parameters())
    with torch.inference_mode():
        want = fp32.network(x)
        with half.network.fp32():
            got = half.network(x)
        assert not torch.equal(half.network(x), want)  # the half path is on outside the block
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    ref = np.stack([expected[f"{c}_logits"] for c in CASES])
    np.testing.assert_allclose(got.numpy(), ref, atol=TOL, rtol=0)
