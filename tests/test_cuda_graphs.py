"""CUDA-graph buckets: the logic on a CPU with a fake backend, the real capture on a GPU.

The fake "replays" a function of the whole staged bucket (padding rows included), so a test
sees exactly what a graph would have read: stale rows, a broadcast, a missed invalidation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.model.cuda_graphs import (
    DEFAULT_BUCKETS,
    GraphedForward,
    Replay,
    bucket_for,
    stage_rows,
    weights_key,
)


class FakeBackend:
    """Replays "graphs" on the CPU: row i -> [first sample, bucket, row sum, generation, 0, 0]."""

    def __init__(self) -> None:
        self.staged: np.ndarray | None = None
        self.captured: list[int] = []
        self.releases = 0
        self.scale = 1.0
        self.reserved_bytes: int | None = None

    def staging(self, rows: int) -> np.ndarray:
        self.staged = np.full((rows, WINDOW_SAMPLES), np.nan, dtype=np.float32)  # dirty memory
        return self.staged

    def capture(self, bucket: int) -> Replay:
        self.captured.append(bucket)
        staged, scale = self.staged, self.scale  # a graph keeps what it captured
        assert staged is not None

        def replay() -> np.ndarray:
            x = staged[:bucket]
            out = np.zeros((bucket, NUM_CLASSES), dtype=np.float32)
            out[:, 0], out[:, 1], out[:, 2] = x[:, 0] * scale, bucket, x.sum(axis=1)
            return out

        return replay

    def release(self) -> None:
        self.releases += 1
        self.staged = None


def windows(*ids: float) -> np.ndarray:
    x = np.zeros((len(ids), WINDOW_SAMPLES), dtype=np.float32)
    x[:, 0] = ids
    return x


def make(max_batch: int = 8) -> tuple[GraphedForward, FakeBackend, dict[str, int]]:
    backend, key = FakeBackend(), {"weights": 0}
    eager = lambda x: np.full((len(x), NUM_CLASSES), -1.0, np.float32)  # noqa: E731
    return GraphedForward(backend, lambda: key["weights"], eager, max_batch=max_batch), backend, key


def test_bucket_choice() -> None:
    assert [bucket_for(n, DEFAULT_BUCKETS) for n in (1, 2, 3, 5, 8, 9, 64)] == [
        1,
        2,
        4,
        8,
        8,
        16,
        64,
    ]
    for n in (0, 65):
        with pytest.raises(ValueError, match="no bucket"):
            bucket_for(n, DEFAULT_BUCKETS)


def test_staging_pads_with_zeros_and_refuses_what_does_not_fit() -> None:
    staging = np.full((4, WINDOW_SAMPLES), 7.0, dtype=np.float32)
    stage_rows(staging, windows(1, 2, 3), 4)
    assert staging[:3, 0].tolist() == [1, 2, 3] and not staging[3].any()
    with pytest.raises(ValueError, match="cannot stage"):
        stage_rows(staging, windows(1, 2, 3), 2)  # never broadcast or truncated
    with pytest.raises(ValueError, match="cannot stage"):
        stage_rows(staging, np.zeros((1, 100), np.float32), 1)
    with pytest.raises(ValueError, match="larger than the staging"):
        stage_rows(staging, windows(1), 8)


def test_buckets_are_captured_largest_first_and_results_sliced() -> None:
    graphed, backend, _ = make(max_batch=8)
    assert graphed.buckets == (1, 2, 4, 8)
    out = graphed(windows(10, 11, 12))
    assert backend.captured == [8, 4, 2, 1]
    assert out.shape == (3, NUM_CLASSES)
    assert out[:, 0].tolist() == [10, 11, 12] and (out[:, 1] == 4).all()
    assert out[:, 2].tolist() == [10, 11, 12]  # the padding row was zero, not stale NaN
    graphed(windows(5))
    assert backend.captured == [8, 4, 2, 1] and graphed.replays == 2  # nothing recaptured


def test_batches_above_the_largest_bucket_run_in_chunks() -> None:
    graphed, _, _ = make(max_batch=4)
    out = graphed(windows(*range(10)))
    assert out[:, 0].tolist() == list(range(10))
    assert out[:, 1].tolist() == [4] * 8 + [2] * 2 and graphed.replays == 3
    with pytest.raises(ValueError, match="expected"):
        graphed(np.zeros((2, 100), np.float32))


def test_a_weights_change_drops_every_graph_before_the_next_replay() -> None:
    graphed, backend, key = make(max_batch=2)
    assert graphed(windows(3))[0, 0] == 3 and graphed.generation == 1
    backend.scale, key["weights"] = 2.0, 1  # new weights: old graphs would still say 3
    assert graphed(windows(3))[0, 0] == 6
    assert graphed.generation == 2 and graphed.invalidations == 1 and backend.releases == 1
    assert backend.captured == [2, 1, 2, 1]
    graphed(windows(3))
    assert graphed.generation == 2 and backend.releases == 1


def test_a_non_finite_replay_falls_back_to_the_eager_forward() -> None:
    graphed, _, _ = make()
    out = graphed(windows(1, np.inf))
    assert (out == -1.0).all() and graphed.fallbacks == 1


def test_weights_key_follows_in_place_edits_and_dtype() -> None:
    linear = torch.nn.Linear(3, 2)
    net = torch.nn.Sequential(linear, torch.nn.LayerNorm(2))
    before = weights_key(net)
    assert weights_key(net) == before
    with torch.no_grad():
        linear.weight.mul_(2.0)
    edited = weights_key(net)
    assert edited != before
    net.to(torch.float64)
    assert weights_key(net) != edited


@pytest.mark.requires_cuda
def test_real_graphs_equal_eager_and_follow_weight_edits() -> None:
    from streamser.model import load_model

    em = load_model("demo", compute="cuda")
    graphed = GraphedForward.for_model(em, max_batch=4)
    x = np.random.default_rng(3).standard_normal((3, WINDOW_SAMPLES)).astype(np.float32)

    def close(a: np.ndarray, b: np.ndarray) -> None:  # fp16, different batch shapes
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-2 * float(np.abs(b).max()) + 1e-6)

    close(graphed(x), em.logits(x))
    assert graphed.captures == 3 and graphed.fallbacks == 0
    close(graphed(x[:1]), em.logits(x[:1]))
    pos_conv: Any = em.network.hubert.encoder.pos_conv_embed.conv.parametrizations.weight
    with torch.no_grad():  # a derived (cached) weight: a stale graph would miss this edit
        pos_conv.original1.add_(torch.randn_like(pos_conv.original1), alpha=0.05)
        em.network.classifier.weight.mul_(3.0)
    close(graphed(x), em.logits(x))
    assert graphed.generation == 2 and graphed.captures == 6
