"""The GPU stages of a bench: CUDA-graph replays and fp16 against fp32.

Written for a CUDA machine (fp16, SDPA flash attention, CUDA graphs); a CPU never runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamser.model.cuda_graphs import GraphedForward, bucket_for
from streamser.model.runtime import EmotionModel
from streamser.perf.meters import peak_memory_bytes, reset_peak_memory
from streamser.perf.stages import fixture_deviation
from streamser.perf.timing import Rig, Timing, max_abs, relabel, time_paths


def gpu_stages(
    em: EmotionModel,
    sizes: Sequence[int],
    rig: Rig,
    optimised: dict[int, np.ndarray],
    cuda_graphs: bool,
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any]]:
    """Bucketed CUDA-graph replays (:mod:`streamser.model.cuda_graphs`) at every batch size,
    and fp16 against fp32 on the bundled fixture.

    One set of buckets serves every size; a size between buckets is padded up to the next,
    and its timing includes the padding, as it would in use. The capture reports the memory
    the graphs' private pool reserved (``GraphedForward.pool_bytes``: the growth of
    ``torch.cuda.memory_reserved`` across the captures), beside the peak allocated.
    """
    rows: list[Timing] = []
    graphs: list[dict[str, Any]] = []
    capture: dict[str, Any] | None = None
    if cuda_graphs:
        graphed = GraphedForward.for_model(em, max_batch=max(sizes))
        say(f"capturing CUDA graphs for batch buckets {graphed.buckets}, largest first")
        reset_peak_memory(rig.device)
        t0 = time.perf_counter()
        graphed.capture()
        capture = {
            "buckets": list(graphed.buckets),
            "capture_s": time.perf_counter() - t0,
            "peak_memory_bytes": peak_memory_bytes(rig.device),
            "pool_reserved_bytes": graphed.pool_bytes,
        }
        for b in sizes:
            say(f"{em.precision} + CUDA graph: batch {b} x {rig.repeats}")
            fallbacks, generation = graphed.fallbacks, graphed.generation
            timing, logits = time_paths({"graph": graphed}, b, rig)["graph"]
            eager = graphed.fallbacks - fallbacks
            # Labelled after the run: what replayed, and whether replays fell back to eager.
            label = f"CUDA graph {em.describe()}" + (" + eager fallback" if eager else "")
            rows.append(relabel(timing, label))
            graphs.append(
                {
                    "batch": b,
                    "bucket": bucket_for(min(b, graphed.buckets[-1]), graphed.buckets),
                    "max_abs_logit_diff_vs_eager": max_abs(logits, optimised[b]),
                    "half_fallbacks": eager,
                    "recaptured": graphed.generation != generation,
                }
            )
        capture["generations"] = graphed.generation
        capture["pool_reserved_bytes"] = graphed.pool_bytes
        graphed.release()
        del graphed
    return rows, {
        "cuda_graphs": graphs,
        "cuda_graph_capture": capture,
        "half_fallbacks": em.half_fallbacks,
        "fixture_fp16_vs_fp32": fixture_deviation("cuda", None),
    }
