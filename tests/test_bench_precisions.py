"""The bench's precision rows and GPU bookkeeping, without a GPU: labels decided after the
timing, the bf16 skip, the datasheet match, the graphs' pool figure and the report's table."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest
import torch

from streamser.commands.bench_cmd import _precisions
from streamser.contracts import ModelInfo
from streamser.model.cuda_graphs import GraphedForward, weights_key
from streamser.model.demo import DEMO_CONFIG, random_network
from streamser.model.runtime import EmotionModel
from streamser.perf import precisions as precisions_mod
from streamser.perf.machine import datasheet_fp16_tflops, gpu_model_key
from streamser.perf.options import BenchOptions
from streamser.perf.precisions import PrecisionSet
from streamser.perf.report import _precisions as precision_table
from streamser.perf.stages import optimised_and_baseline
from streamser.perf.timing import Rig
from tests.test_cuda_graphs import FakeBackend, windows


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 HBM3"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", None),  # neither L40S nor L4
        ("NVIDIA H200 SXM 141GB", None),  # a word no entry has: unknown, not "H200"
        ("NVIDIA H100", None),  # which H100 is not said: unknown
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_datasheet_matches_the_whole_name_or_nothing(name: str, entry: str | None) -> None:
    found, tflops = datasheet_fp16_tflops(name)
    assert found == entry
    assert (tflops is None) == (entry is None)
    if entry == "H200 NVL":
        assert tflops != datasheet_fp16_tflops("NVIDIA H200")[1]


def test_gpu_model_key_drops_vendor_and_memory() -> None:
    assert gpu_model_key("NVIDIA A100-SXM4-40GB") == "a100 sxm4"
    assert gpu_model_key("  NVIDIA  H100 80GB HBM3 ") == "h100 hbm3"


def test_precision_options() -> None:
    assert BenchOptions().resolved_precisions() == ("fp32", "half")
    assert BenchOptions(quantize="int8").resolved_precisions() == ("fp32", "half", "int8")
    assert BenchOptions(precisions=("half-fp16",)).resolved_precisions() == ("fp32", "half-fp16")
    assert BenchOptions(precisions=("int8",)).int8 and not BenchOptions().int8
    assert _precisions("fp32, half,int8") == ("fp32", "half", "int8")
    with pytest.raises(argparse.ArgumentTypeError):
        _precisions("fp8")


def tiny_model(precision: str = "fp32") -> EmotionModel:
    info = ModelInfo.random_weights("precision rows", "random weights", 1, 0.0)
    em = EmotionModel(random_network(DEMO_CONFIG, seed=2), info, torch.device("cpu"), precision)
    em.threads = None
    return em


def test_slow_bf16_is_skipped_with_a_note_unless_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = {"shape": "149x1024x1024", "gflop_per_s": {"float32": 50.0, "bfloat16": 4.0}}
    monkeypatch.setattr(precisions_mod, "bf16_probe", lambda: {**slow, "bf16_faster": False})
    em = tiny_model()
    skipped = PrecisionSet(em, ("fp32", "half"), explicit=False, quick=False)
    assert list(skipped.models) == ["fp32"] and skipped.models["fp32"] is em
    assert (
        "slower than fp32" in skipped.skipped["half"]
        and "4.0 against 50.0" in (skipped.skipped["half"])
    )
    for explicit, quick in ((True, False), (False, True)):
        ran = PrecisionSet(em, ("fp32", "half"), explicit=explicit, quick=quick)
        assert ran.models["half"].precision == "half-bf16" and not ran.skipped


def test_models_sharing_a_network_each_run_their_own_precision() -> None:
    em = tiny_model()
    x = np.random.default_rng(0).standard_normal((2, 48_000)).astype(np.float32)
    alone = em.logits(x)
    ps = PrecisionSet(em, ("fp32", "half"), explicit=True, quick=True)
    half = ps.models["half"].logits(x)
    again = em.logits(x)  # after the half model ran on the same network
    np.testing.assert_array_equal(again, alone)
    assert 0 < np.abs(half - alone).max() < 0.05
    assert em.network.half_dtype is None and ps.models["half"].half_dtype == torch.bfloat16


def test_labels_say_what_ran_after_the_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    em = tiny_model()
    ps = PrecisionSet(em, ("fp32", "half"), explicit=True, quick=True)
    half = ps.models["half"]
    real = half._half_pass

    def overflowing(x: torch.Tensor) -> torch.Tensor:
        out = real(x)
        out[0] = float("nan")  # the first window of every half batch overflows
        return out

    monkeypatch.setattr(half, "_half_pass", overflowing)
    rig = Rig(2, torch.device("cpu"), 1e9, 100.0, 100.0)
    main = optimised_and_baseline(
        em, BenchOptions(quick=True, baseline=False), (2,), rig, lambda _: None, ps
    )
    rows = {r.precision: r for r in main.precision_rows}
    assert set(rows) == {"fp32", "half-bf16 + fp32 fallback"}
    row = rows["half-bf16 + fp32 fallback"]
    assert row.half_fallbacks == 3  # warm-up and two repeats, one window each
    assert row.note == "3 of 6 windows recomputed in fp32"
    assert row.max_abs_prob_diff_vs_fp32 is not None and row.max_abs_prob_diff_vs_fp32 < 0.05
    assert {t.path for t in main.timings} == {"optimised cpu/float32", "optimised cpu/bfloat16"}

    ps.em_device = "cuda"  # as if the models had started on a GPU that then failed
    assert ps.label(ps.models["fp32"], 0, 3) == ("fp32 (cpu fallback)", ps.label(em, 0, 3)[1])
    assert "the cuda failed" in ps.label(em, 0, 3)[1]


def test_graph_pool_bytes_come_from_the_backend() -> None:
    backend = FakeBackend()
    graphed = GraphedForward(backend, lambda: 0, lambda x: x[:, :6], buckets=(1, 2))
    assert graphed.pool_bytes is None
    backend.reserved_bytes = 3 << 20
    graphed(windows(1.0))
    assert graphed.pool_bytes == 3 << 20


def test_weights_key_follows_the_half_flags() -> None:
    net = random_network(DEMO_CONFIG, seed=1)
    before = weights_key(net)
    net.set_half(torch.float16)
    assert weights_key(net) != before
    net.set_half(None)
    assert weights_key(net) == before


def test_report_table_shows_rows_and_skips() -> None:
    row: dict[str, Any] = {
        "precision": "fp32",
        "batch": 1,
        "s_per_window": 0.5,
        "windows_per_s": 2.0,
        "max_abs_prob_diff_vs_fp32": 0.0,
        "half_fallbacks": None,
        "note": "",
    }
    skipped = {**row, "precision": "half", "s_per_window": None, "note": "skipped: slow"}
    lines = precision_table({"precisions": {"rows": [row, skipped], "bf16_probe": None}})
    text = "\n".join(lines)
    assert "max |prob diff| vs fp32" in lines[0]
    assert "0.5000" in text and "skipped: slow" in text
