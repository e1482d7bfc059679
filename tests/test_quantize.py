"""``--quantize int8``: which layers it converts, how far it moves the output, its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from streamser import load_model
from streamser.model.errors import ModelError
from streamser.model.runtime import int8_layer_names, quantize_int8
from tests.conftest import DATA_DIR

FIXTURE = DATA_DIR / "tiny-parametrized"
MAX_PROB_DIFF = 0.02


def test_int8_converts_attention_and_feed_forward_but_keeps_gates_and_head_fp32() -> None:
    fp32 = load_model(str(FIXTURE), compute="cpu").network
    names = int8_layer_names(fp32)
    layers = len(fp32.hubert.encoder.layers)
    assert len(names) == 6 * layers  # q, k, v, out + two feed-forward layers per encoder layer
    q = quantize_int8(fp32)  # a copy: the original stays fp32
    modules = dict(q.named_modules())
    converted = {n for n, m in modules.items() if isinstance(m, DynamicLinear)}
    assert converted == set(names)
    for name in names:
        weight = modules[name].weight()
        assert weight.dtype == torch.qint8
        assert weight.qscheme() == torch.per_channel_affine  # one scale per output channel
    for name, module in modules.items():
        if name.endswith("gate_bb_linear") or name in ("projector", "classifier"):
            assert type(module) is nn.Linear, name
    assert all(type(m) is nn.Linear for n, m in fp32.named_modules() if n in names)


def test_int8_stays_close_to_fp32_on_the_fixture() -> None:
    with np.load(FIXTURE / "expected.npz") as e:
        waves = [e[f"{c}_waveform"] for c in ("full_3s", "short_1_3s", "long_4s_truncated")]
    fp32 = load_model(str(FIXTURE), compute="cpu")
    int8 = load_model(str(FIXTURE), compute="cpu", quantize="int8")
    assert int8.info.name.endswith("(int8)")
    a = np.stack([p.probs for p in fp32.predict_batch(waves, sample_rate=16_000)])
    b = np.stack([p.probs for p in int8.predict_batch(waves, sample_rate=16_000)])
    diff = float(np.abs(a - b).max())
    assert 0.0 < diff < MAX_PROB_DIFF  # quantised (not a no-op), and close


@pytest.mark.parametrize(
    ("quantize", "compute", "message"),
    [("int4", "cpu", "the only choice is int8"), ("int8", "cuda", "add --compute cpu")],
)
def test_int8_bad_choices_name_the_fix(quantize: str, compute: str, message: str) -> None:
    if compute == "cuda" and not torch.cuda.is_available():
        with pytest.raises(ModelError):  # asking for CUDA without one is its own clear error
            load_model(str(FIXTURE), compute=compute, quantize=quantize)
        return
    with pytest.raises(ModelError, match=message):
        load_model(str(FIXTURE), compute=compute, quantize=quantize)
