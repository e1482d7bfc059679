"""The FLOP count, ``streamser bench --quick`` and the network's fast paths.

The FLOP count is checked against ``torch.utils.flop_counter.FlopCounterMode``, which counts
the FLOPs of the convolution, matrix-product and attention kernels that actually run
(2 per multiply-add, biases excluded), the same set ``streamser.perf.flops`` counts from the
config: the two must agree exactly (tolerance 0). On the meta device torch decomposes SDPA into
two batched products, which it counts; on a CPU the fused SDPA kernel is not counted by torch
2.13, so the real-tensor check runs with eager attention.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from streamser.model.demo import DEMO_CONFIG, random_network
from streamser.model.exhubert import ExHubertConfig, build_on_meta, linear_blocked
from streamser.model.runtime import ThreadPolicy
from streamser.perf.flops import conv_frames, count_flops, format_flops
from tests.conftest import DATA_DIR, ROOT_DIR

PUBLISHED = ExHubertConfig.from_json_file(DATA_DIR / "published_config.json")


def torch_count(network: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_full_size_flops_equal_torch_count_on_meta(fast: bool, batch: int) -> None:
    network = build_on_meta(PUBLISHED)
    network.set_fast_paths(fast)
    network.fuse_qkv(fast)
    counted = torch_count(network, torch.empty(batch, 48_000, device="meta"))
    assert count_flops(PUBLISHED, batch).total == counted


def test_published_model_needs_about_217_gflop_per_window() -> None:
    count = count_flops(PUBLISHED)
    assert count.frames == 149
    assert count.per_window == pytest.approx(216.818e9, rel=1e-5)
    groups = count.by_group()
    assert groups["feed-forward"] == 2 * 48 * 2 * 149 * 1024 * 4096
    assert sum(groups.values()) == count.total
    assert count_flops(PUBLISHED, 4).total == 4 * count.total


def test_tiny_model_flops_equal_torch_count_on_real_tensors() -> None:
    network = random_network(DEMO_CONFIG, seed=3)
    network.set_attention("eager")
    counted = torch_count(network, torch.randn(2, 48_000))
    assert count_flops(DEMO_CONFIG, 2).total == counted


def test_frame_counts_and_printed_breakdown() -> None:
    assert conv_frames(48_000, PUBLISHED.conv_kernel, PUBLISHED.conv_stride) == [
        9599,
        4799,
        2399,
        1199,
        599,
        299,
        149,
    ]
    with pytest.raises(ValueError, match="too short"):
        conv_frames(100, PUBLISHED.conv_kernel, PUBLISHED.conv_stride)
    text = format_flops(count_flops(PUBLISHED))
    assert "gate_bb_linear" in text and "216.818" in text


def test_bench_imports_no_ui_or_audio_libraries() -> None:
    code = (
        "import sys, streamser.perf.bench, streamser.perf.flops, streamser.commands.bench_cmd;"
        "print(sorted(m for m in ('textual', 'sounddevice', 'soundfile') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_quick_bench_writes_well_formed_json(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamser.commands.bench_cmd",
            "--quick",
            "--compute",
            "cpu",
            "--quantize",
            "int8",
            "--backend",
            "onnxruntime",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "optimised" in r.stdout and "baseline" in r.stdout
    report = json.loads(out.read_text(encoding="utf-8"))

    assert report["quick"] is True
    assert report["peak"]["gflop_per_s"] > 0
    assert report["model"]["gflop_per_window"] == pytest.approx(
        count_flops(DEMO_CONFIG).per_window / 1e9
    )
    load = report["load"]
    assert load["to_first_estimate_s"] >= load["first_forward_s"] > 0
    assert load["peak_memory_bytes"] > 0

    paths = {t["path"] for t in report["timings"]}
    assert {
        "optimised cpu/float32",
        "eager fp32 baseline",
        "int8 dynamic",
        "onnxruntime fp32",
    } <= paths
    for t in report["timings"]:
        assert t["batch"] in (1, 2) and t["repeats"] == 2 and len(t["forward_s"]) == 2
        for key in ("forward_median_s", "forward_p95_s", "s_per_window", "windows_per_s"):
            assert t[key] > 0, (t["path"], key)
        assert t["fraction_of_peak"] > 0 and t["achieved_gflop_per_s"] > 0
        assert t["peak_memory_bytes"] > 0

    comparison = report["baseline_comparison"]
    assert [c["batch"] for c in comparison] == [1, 2]
    for c in comparison:
        assert c["speedup"] > 0
        assert c["max_abs_logit_diff"] < 1e-4

    int8 = report["int8"]
    assert [row["batch"] for row in int8["random_model"]] == [1, 2]
    fixture = int8["fixture"]
    assert fixture["max_abs_logit_diff_fp32_vs_reference"] < 1e-4
    assert 0 < fixture["max_abs_prob_diff_vs_fp32"] < 0.02

    onnx = report["onnxruntime"]
    assert onnx["export_s"] > 0 and onnx["session_s"] > 0 and onnx["threads"] >= 1
    assert [row["batch"] for row in onnx["rows"]] == [1, 2]
    for row in onnx["rows"]:
        assert row["max_abs_logit_diff_vs_torch"] < 1e-4
        assert row["speedup_vs_torch_alternated"] > 0
    assert "onnxruntime vs torch, batch 1" in r.stdout
    assert report["reference_cpu"]["s_per_window"] == {"1": 2.50, "4": 1.86}
    check_precision_rows(report, r.stdout)


def check_precision_rows(report: dict[str, Any], stdout: str) -> None:
    """fp32, half (bf16 on a CPU), onnxruntime and int8 at batches 1 and 2: each timed, each
    against the fp32 row of its batch. --quick runs bf16 even where the probe finds it slow."""
    rows = report["precisions"]["rows"]
    by = {(row["precision"], row["batch"]): row for row in rows}
    names = ("fp32", "half-bf16", "onnxruntime fp32", "int8")
    assert set(by) == {(p, b) for p in names for b in (1, 2)}, sorted(by)
    for row in rows:
        assert row["s_per_window"] > 0 and row["windows_per_s"] > 0, row
        assert row["s_per_window"] * row["windows_per_s"] == pytest.approx(1.0)
        assert row["note"] == "", row
    bounds = {"fp32": 0.0, "half-bf16": 0.02, "onnxruntime fp32": 1e-5, "int8": 0.02}
    for (name, _), row in by.items():
        assert 0 <= row["max_abs_prob_diff_vs_fp32"] <= bounds[name], row
        assert row["half_fallbacks"] == (0 if name == "half-bf16" else None), row
    assert by[("half-bf16", 1)]["max_abs_prob_diff_vs_fp32"] > 0  # it did run in bf16
    probe = report["precisions"]["bf16_probe"]
    assert probe["gflop_per_s"]["bfloat16"] > 0 and probe["gflop_per_s"]["float32"] > 0
    paths = {t["path"] for t in report["timings"]}
    assert {"optimised cpu/float32", "optimised cpu/bfloat16"} <= paths
    assert "max |prob diff| vs fp32" in stdout and "half-bf16" in stdout


# ----------------------------------------------------------------------------- fast paths


def _outputs(network: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return network(x).double().numpy()


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    """Random-weight logits are small (~1e-3): compare relative to their scale."""
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def assert_differ(a: np.ndarray, b: np.ndarray) -> None:
    assert np.abs(a - b).max() > 1e-2 * np.abs(b).max()


def test_fused_qkv_keeps_state_dict_and_follows_weight_changes() -> None:
    network = random_network(DEMO_CONFIG, seed=4)
    keys = list(network.state_dict())
    x = torch.randn(2, 48_000)
    plain = _outputs(network, x)
    assert network.fuse_qkv()
    assert list(network.state_dict()) == keys
    assert_same(_outputs(network, x), plain)

    # An in-place edit of a projection lands in the fused weight (they share memory) ...
    layer = network.hubert.encoder.layers[0].attention
    with torch.no_grad():
        layer.v_proj.weight.mul_(3.0)
    fused_out = _outputs(network, x)
    network.fuse_qkv(False)
    assert_same(fused_out, _outputs(network, x))
    assert_differ(fused_out, plain)

    # ... and a conversion that replaces the weights makes the layer run unfused, correctly.
    network.fuse_qkv()
    doubled = network.to(torch.float64)
    with torch.inference_mode():
        assert layer._fused() is None
        assert_same(doubled(x.double()).numpy(), fused_out)


def test_cached_derived_weights_are_recomputed_after_an_in_place_change() -> None:
    network = random_network(DEMO_CONFIG, seed=5)
    pos = network.hubert.encoder.pos_conv_embed
    conv = network.hubert.feature_extractor.conv_layers[1]
    h, frames = torch.randn(2, 149, DEMO_CONFIG.hidden_size), torch.randn(2, 500, 32)
    before = (_outputs(pos, h), _outputs(conv, frames))
    with torch.no_grad():
        pos.conv.parametrizations.weight.original0.mul_(4.0)
        # Not a rescale: the LayerNorm after the convolution would cancel it.
        conv.conv.weight.add_(torch.randn_like(conv.conv.weight), alpha=0.05)
    after = (_outputs(pos, h), _outputs(conv, frames))
    network.set_fast_paths(False)  # the plain path recomputes everything on each call
    plain = (_outputs(pos, h), _outputs(conv, frames))
    for a, b, p in zip(after, before, plain):
        assert_same(a, p)
        assert_differ(a, b)


# ----------------------------------------------------------------------------- thread policy


def feed(policy: ThreadPolicy, seconds_by_threads: dict[int, float], windows: int) -> list[int]:
    """Run ``windows`` one-window forwards whose time depends on the thread count used."""
    used = []
    for _ in range(windows):
        used.append(policy.threads)
        policy.record(seconds_by_threads[policy.threads], 1)
    return used


def test_thread_policy_keeps_every_core_while_the_machine_is_idle() -> None:
    policy = ThreadPolicy(2)
    assert feed(policy, {2: 1.8, 1: 3.1}, 100) == [2] * 100
    assert policy.changes == 0


def test_thread_policy_gives_a_core_away_under_contention_and_probes_back() -> None:
    policy = ThreadPolicy(2, patience=2, probe_every=16)
    feed(policy, {2: 1.8, 1: 3.1}, 5)  # idle: learns the best time with 2 threads
    contended = {2: 8.0, 1: 3.1}
    used = feed(policy, contended, 2 + 16 + 1 + 16)
    # Two slow windows, then one thread; after 16 windows one probe with two, which is slow
    # again and goes straight back.
    assert used == [2, 2] + [1] * 16 + [2] + [1] * 16
    # Contention over: the next probe stays.
    assert feed(policy, {2: 1.9, 1: 3.1}, 3) == [2, 2, 2]


def test_thread_policy_ignores_one_slow_window_and_short_forwards() -> None:
    policy = ThreadPolicy(2)
    feed(policy, {2: 1.8}, 3)
    policy.record(9.0, 1)  # one hiccup (a collection, a page-cache miss)
    assert policy.threads == 2
    tiny = ThreadPolicy(2)
    for _ in range(10):
        tiny.record(0.01, 1)
        tiny.record(0.04, 1)  # demo-sized forwards: too short to judge
    assert tiny.threads == 2 and tiny.best_s_per_window == {}


def test_thread_policy_judges_time_per_window_across_batch_sizes() -> None:
    policy = ThreadPolicy(4, patience=1)
    policy.record(4 * 1.6, 4)  # a batch of 4 at 1.6 s per window
    policy.record(1.9, 1)  # a single window: slower per window, not contention
    assert policy.threads == 4
    policy.record(4 * 3.0, 4)
    assert policy.threads == 3


@pytest.mark.parametrize("rows", [1, 149, 2 * 149, 1200])
def test_blocked_linear_equals_one_gemm(rows: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(1, rows, 256, generator=gen)
    w = torch.randn(2560, 256, generator=gen) / 16
    b = torch.randn(2560, generator=gen)
    with torch.inference_mode():
        got = linear_blocked(x, w, b)
    assert got.shape == (1, rows, 2560)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)
