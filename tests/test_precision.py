"""Mixed precision: accuracy of the half path against fp32, the fp32-master guard, the choice
of precision (``auto``, stored verdicts) and the residual-stream numerics report.

Both half dtypes run on any CPU (fp16 slowly), so both are checked here without a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamser import load_model
from streamser.model.demo import random_network
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert, ExHubertConfig
from streamser.model.loading import ModelInfo
from streamser.model.numerics import FP16_MAX, residual_stream_numerics, synthetic_windows
from streamser.model.precision import (
    CpuCaps,
    choose_precision,
    cpu_caps,
    model_identity,
    read_verdict,
    verdict_path,
    write_verdict,
)
from streamser.model.runtime import EmotionModel
from tests.conftest import DATA_DIR

FIXTURE = DATA_DIR / "tiny-parametrized"
CASES = ("full_3s", "short_1_3s", "long_4s_truncated")
MAX_PROB_DIFF = {"half-fp16": 2e-3, "half-bf16": 5e-3}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "streamser-cache"
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as e:
        return [e[f"{c}_waveform"] for c in CASES]


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    with np.load(FIXTURE / "expected.npz") as e:
        return np.stack([e[f"{c}_input_values"] for c in CASES])


@pytest.fixture(scope="module")
def fp32_logits(inputs: np.ndarray) -> np.ndarray:
    return load_model(str(FIXTURE), compute="cpu", precision="fp32").logits(inputs)


def probs(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def no_inference_tensors(model: EmotionModel) -> bool:
    copies = [c for c in model.network._half_copies() for c in c._slots.values()]
    cached = [c.value for c in copies if c.value is not None]
    tensors = [*model.network.parameters(), *model.network.buffers(), *cached]
    return not any(t.is_inference() for t in tensors)


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("precision", ["half-fp16", "half-bf16"])
def test_half_stays_close_to_fp32_on_the_fixture(
    waves: list[np.ndarray], precision: str, fp32_logits: np.ndarray
) -> None:
    """The fixture's residual stream passes 1.2e5 at layer 26: plain fp16 gives NaN, the mixed
    path (stream, LayerNorms and gates in fp32) stays finite and close."""
    model = load_model(str(FIXTURE), compute="cpu", precision=precision)
    assert model.precision == precision
    assert model.dtype_name == {"half-fp16": "float16", "half-bf16": "bfloat16"}[precision]
    assert model.describe() == f"cpu/{model.dtype_name}"
    got = np.stack([p.probs for p in model.predict_batch(waves, sample_rate=16_000)])
    assert np.all(np.isfinite(got))
    diff = float(np.abs(got - probs(fp32_logits)).max())
    assert 0.0 < diff <= MAX_PROB_DIFF[precision]  # half (not a no-op), and close
    assert model.half_fallbacks == 0
    assert no_inference_tensors(model)


def test_plain_fp16_overflows_on_the_fixture(inputs: np.ndarray) -> None:
    """Why the mixed path exists: the whole network in fp16 gives NaN on the fixture."""
    model = load_model(str(FIXTURE), compute="cpu", precision="fp32")
    net = model.network.half()
    with torch.inference_mode():
        out = net(torch.from_numpy(inputs[:1]).half())
    assert not bool(torch.isfinite(out).all())


def test_fp32_is_the_default_on_a_cpu_and_unchanged(
    inputs: np.ndarray, fp32_logits: np.ndarray
) -> None:
    default = load_model(str(FIXTURE), compute="cpu")
    assert default.precision == "fp32" and default.dtype_name == "float32"
    np.testing.assert_array_equal(default.logits(inputs), fp32_logits)
    with np.load(FIXTURE / "expected.npz") as e:
        ref = np.stack([e[f"{c}_logits"] for c in CASES])
    np.testing.assert_allclose(fp32_logits, ref, atol=1e-4, rtol=0)


def _mid_size(seed: int) -> ExHubert:
    cfg = ExHubertConfig(
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        conv_dim=(256,) * 7,
        classifier_proj_size=64,
    )
    return random_network(cfg, seed=seed)


def _mid_size_deviation(precision: str, seeds: tuple[int, ...], windows: int) -> float:
    worst = 0.0
    info = ModelInfo.random_weights("mid-size", "random weights", 0)
    for seed in seeds:
        x = synthetic_windows(windows, seed=seed)  # speech-like and noise, alternately
        fp32 = EmotionModel(_mid_size(seed), info, CPU, "fp32").logits(x)
        half = EmotionModel(_mid_size(seed), info, CPU, precision)
        got = half.logits(x)
        assert np.all(np.isfinite(got)) and half.half_fallbacks == 0
        worst = max(worst, float(np.abs(probs(got) - probs(fp32)).max()))
    return worst


def test_bf16_half_stays_close_on_a_mid_size_random_model() -> None:
    """48 layers of width 256, three seeds, speech-like and noise windows: the CPU's half path."""
    assert _mid_size_deviation("half-bf16", seeds=(0, 1, 2), windows=4) <= 0.01


@pytest.mark.slow
def test_fp16_half_stays_close_on_a_mid_size_random_model() -> None:
    """The same in fp16, the GPUs' half dtype; slow on a CPU (no fp16 arithmetic units)."""
    assert _mid_size_deviation("half-fp16", seeds=(0, 1), windows=2) <= 0.01


# ----------------------------------------------------------------------------- the guard


def test_guard_recomputes_only_the_bad_rows_from_the_fp32_master(
    inputs: np.ndarray,
    fp32_logits: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = load_model(str(FIXTURE), compute="cpu", precision="half-bf16")
    clean = model.logits(inputs)
    real_half_pass = model._half_pass

    def one_bad_row(x: torch.Tensor) -> torch.Tensor:
        out = real_half_pass(x)
        out[1] = torch.inf
        return out

    monkeypatch.setattr(model, "_half_pass", one_bad_row)
    with caplog.at_level(logging.WARNING, logger="streamser"):
        first = model.logits(inputs)
        second = model.logits(inputs)
    np.testing.assert_allclose(first[1], fp32_logits[1], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(first[[0, 2]], clean[[0, 2]])  # still the half result
    np.testing.assert_array_equal(second, first)
    assert model.half_fallbacks == 2
    assert sum("recomputed them in fp32" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.undo()
    np.testing.assert_array_equal(model.logits(inputs), clean)  # half again, not fp32 for good
    assert model.precision == "half-bf16" and model.half_fallbacks == 2
    assert no_inference_tensors(model)


def test_an_input_that_overflows_fp16_is_recomputed_in_fp32(inputs: np.ndarray) -> None:
    """A row scaled far beyond a normalised waveform overflows fp16 in the first convolution;
    the fp32 recompute matches fp32 and the other rows keep their half result."""
    x = inputs.copy()
    x[2] *= 1e5
    fp32 = load_model(str(FIXTURE), compute="cpu", precision="fp32").logits(x)
    model = load_model(str(FIXTURE), compute="cpu", precision="half-fp16")
    alone = model.logits(x[:2])
    assert model.half_fallbacks == 0
    got = model.logits(x)
    assert model.half_fallbacks == 1
    np.testing.assert_allclose(got[2], fp32[2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[:2], alone, atol=1e-6, rtol=0)
    assert float(np.abs(got[:2] - fp32[:2]).max()) > 0  # they are the half result
    assert no_inference_tensors(model)


def test_parameters_never_become_inference_tensors_even_when_optimised_in_inference_mode(
    inputs: np.ndarray,
) -> None:
    model = load_model(str(FIXTURE), compute="cpu", precision="half-bf16")
    with torch.inference_mode():
        model.optimise()  # as a caller holding inference mode might
        model.network.fuse_qkv()  # makes the fused weights now: GPUs do this
    model.optimise()
    model.logits(inputs)
    assert no_inference_tensors(model)


# ----------------------------------------------------------------------------- the choice


def caps(**kw: Any) -> CpuCaps:
    base = CpuCaps(
        model_name="test CPU",
        capability="AVX2",
        amx=False,
        avx512_bf16=False,
        flags=("avx2", "fma"),
    )
    return replace(base, **kw)


@pytest.mark.parametrize(
    ("device", "cpu", "want"),
    [
        ("cuda", caps(), "half"),
        ("mps", caps(), "fp32"),
        ("cpu", caps(amx=True, capability="AVX512"), "half"),
        ("cpu", caps(avx512_bf16=True, capability="AVX512"), "int8"),
        ("cpu", caps(), "int8"),
        ("cpu", caps(capability="DEFAULT", flags=("asimd",)), "fp32"),
    ],
)
def test_choose_precision_rule(device: str, cpu: CpuCaps, want: str) -> None:
    assert choose_precision(torch.device(device), cpu) == want


def test_a_measured_verdict_overrides_the_rule() -> None:
    cpu = caps(amx=True)
    assert choose_precision(CPU, cpu, measured_verdict="fp32") == "fp32"
    assert choose_precision(CPU, cpu, measured_verdict="int8") == "int8"
    assert choose_precision(torch.device("cuda"), cpu, measured_verdict="int8") == "half"
    with pytest.raises(ModelError, match="measure again"):
        choose_precision(CPU, cpu, measured_verdict="auto")


def test_this_machine_has_a_choice_and_a_stable_key() -> None:
    here = cpu_caps()
    assert choose_precision(CPU, here) in ("fp32", "half", "int8")
    assert here.machine_key == cpu_caps().machine_key
    assert here.machine_key != caps().machine_key


def test_verdicts_round_trip_and_ignore_other_machines_models_and_versions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    here = caps()
    rows = [{"path": "fp32", "s_per_window": 1.6}, {"path": "int8", "s_per_window": 0.9}]
    path = write_verdict("sha256:abc", "int8", rows, caps=here, version="1.0")
    v = read_verdict("sha256:abc", caps=here, version="1.0")
    assert v is not None and v.precision == "int8" and list(v.rows) == rows
    assert read_verdict("sha256:other", caps=here, version="1.0") is None
    assert read_verdict("sha256:abc", caps=here, version="1.1") is None
    assert read_verdict("sha256:abc", caps=caps(avx512_bf16=True), version="1.0") is None
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="streamser"):
        assert read_verdict("sha256:abc", caps=here, version="1.0") is None
    assert "unreadable precision verdict" in caplog.text
    with pytest.raises(ModelError):
        write_verdict("sha256:abc", "half-bf16", caps=here)


def test_auto_follows_the_rule_or_the_stored_verdict() -> None:
    model = load_model(str(FIXTURE), compute="cpu", precision="auto")
    rule = choose_precision(CPU, cpu_caps())
    assert model.precision == {"half": "half-bf16"}.get(rule, rule)
    ident = model_identity(model.info)
    assert ident.startswith("sha256:")
    for verdict, want in (("fp32", "fp32"), ("half", "half-bf16"), ("int8", "int8")):
        write_verdict(ident, verdict)
        assert read_verdict(ident) is not None
        assert load_model(str(FIXTURE), compute="cpu", precision="auto").precision == want
    assert verdict_path(ident).parent.name == "precision"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, "choose one of auto, fp32, half, int8"),
        ({"precision": "half", "quantize": "int8"}, "contradicts --precision half"),
        ({"precision": "half", "backend": "onnxruntime"}, "use --precision fp32"),
    ],
)
def test_bad_precision_choices_name_the_fix(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(str(FIXTURE), compute="cpu", **kwargs)


def test_quantize_int8_is_an_alias_of_precision_int8(inputs: np.ndarray) -> None:
    a = load_model(str(FIXTURE), compute="cpu", quantize="int8")
    b = load_model(str(FIXTURE), compute="cpu", precision="int8")
    assert a.precision == b.precision == "int8" and a.dtype_name == "int8"
    np.testing.assert_array_equal(a.logits(inputs), b.logits(inputs))
    with pytest.raises(ModelError, match="int8-quantised already"):
        EmotionModel(a.network, a.info, CPU, "half")


# ----------------------------------------------------------------------------- numerics


def test_numerics_report_the_fixtures_overflow_past_layer_25(inputs: np.ndarray) -> None:
    network = load_model(str(FIXTURE), compute="cpu", precision="half-bf16").network
    report = residual_stream_numerics(network, inputs)
    assert network.half_dtype == torch.bfloat16  # left as it was
    assert len(report.layers) == 48 and report.windows == 3
    # SPEC.md: 6.05e4 after the 25th layer (index 24), 1.2e5 after the 26th (index 25).
    assert report.first_overflow_layer == 25
    assert 5e4 < report.layers[24].max_abs <= FP16_MAX < report.layers[25].max_abs < 2e5
    assert report.layers[24].headroom > 1 > report.layers[25].headroom
    assert report.layers[47].max_abs > 1e8 and not report.fits_fp16
    assert report.to_dict()["first_overflow_layer"] == 25


def test_numerics_on_default_windows_of_a_small_random_model() -> None:
    report = residual_stream_numerics(load_model("demo", compute="cpu").network, windows=2)
    assert report.windows == 2 and report.max_abs > 0
    assert all(np.isfinite(x.max_abs) for x in report.layers)


# ----------------------------------------------------------------------------- tune


def test_tune_measures_each_path_and_stores_the_verdict_auto_follows() -> None:
    from streamser.perf.tune import TuneRow, pick, tune

    rows = tune(str(FIXTURE), windows=2, rounds=1, onnx=False)
    assert [r.path for r in rows] == ["fp32", "half-bf16", "int8"]
    assert all(r.s_per_window is not None and r.s_per_window > 0 for r in rows)
    assert rows[0].max_abs_prob_diff_vs_fp32 == 0.0
    assert all(r.max_abs_prob_diff_vs_fp32 is not None for r in rows[1:])
    ident = model_identity(load_model(str(FIXTURE), compute="cpu").info)
    verdict = read_verdict(ident)
    assert verdict is not None and verdict.precision == pick(rows)
    assert [r["path"] for r in verdict.rows] == ["fp32", "half-bf16", "int8"]
    model = load_model(str(FIXTURE), compute="cpu", precision="auto")
    assert model.precision_kind == verdict.precision
    # A fast path that moves the output too far is never picked.
    fast_but_off = TuneRow("int8", 0.1, 0.5, 1, None)
    assert pick([TuneRow("fp32", 1.0, 0.0, 1, None), fast_but_off]) == "fp32"
    with pytest.raises(ModelError, match="no usable path"):
        pick([TuneRow("fp32", None, None, 0, None, "skipped")])
