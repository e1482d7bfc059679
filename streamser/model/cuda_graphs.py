"""CUDA graphs of the network: the whole forward pass replayed for padded batch buckets.

A 3 s window always has the same shape, so the forward pass (hundreds of kernels) can be
captured once per batch size and replayed without paying each kernel's launch from Python.
Batch sizes vary (the executor batches whatever is waiting), so inputs are padded up to a
bucket (1, 2, 4, 8, ...) and the result is sliced back: a handful of graphs cover every size.

* The buckets are captured largest first into one shared memory pool: a smaller graph reuses
  the larger one's activation memory, so all of them cost about as much as the largest.
* Inputs go through one pinned host staging buffer and non-blocking copies, and the host
  waits once per batch, after the logits have been copied back.
* The graphs replay the weights they were captured with. A generation counter, bumped
  whenever the weights' key changes (another tensor, an in-place edit, another dtype, other
  half flags on the network), drops every graph before the next replay. The half guard's fp32
  recompute restores the flags after it, so it leaves the graphs valid.
* The memory the graphs' private pool reserves is measured at capture
  (``GraphedForward.pool_bytes``), so a bench can report what the graphs cost.
* A batch that does not fit the bucket it is staged into is refused, never broadcast.

:class:`GraphedForward` holds everything that needs no GPU (buckets, padding, slicing,
generations, the non-finite fallback); a :class:`GraphBackend` captures and replays.
:class:`CudaGraphBackend` is the real one; tests drive the logic with a fake on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.model.errors import ModelError

if TYPE_CHECKING:
    from streamser.model.runtime import EmotionModel

DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
"""Powers of two: at most half of a replay is padding, and few graphs cover every batch."""
WARMUP_RUNS = 3
"""Eager runs before a capture: they pick the kernels and fill the derived-weight caches."""

Forward = Callable[[np.ndarray], np.ndarray]
Replay = Callable[[], np.ndarray]


def bucket_for(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``rows``; a ``ValueError`` beyond the largest."""
    if rows >= 1:
        for b in sorted(buckets):
            if rows <= b:
                return b
    raise ValueError(f"no bucket holds {rows} rows (buckets {tuple(sorted(buckets))})")


def stage_rows(staging: np.ndarray, x: np.ndarray, bucket: int) -> None:
    """Copy ``x`` into ``staging[:len(x)]`` and zero the padding up to ``bucket``.

    Refuses (``ValueError``) an input that does not fit: a single window copied into a larger
    static input would otherwise be broadcast into every row without a word.
    """
    if bucket > len(staging):
        raise ValueError(f"bucket {bucket} is larger than the staging buffer ({len(staging)})")
    if x.ndim != 2 or x.shape[1] != staging.shape[1] or not 1 <= len(x) <= bucket:
        raise ValueError(f"cannot stage {x.shape} into a ({bucket}, {staging.shape[1]}) bucket")
    np.copyto(staging[: len(x)], x, casting="same_kind")
    staging[len(x) : bucket] = 0.0


def weights_key(network: torch.nn.Module) -> Hashable:
    """What a captured graph depends on: which tensors hold the weights, where, in which dtype,
    how often each was written in place (``_version``), and the network's half dtype (its
    half flags decide which kernels run). Any change means a new capture."""
    key: list[Hashable] = [id(network), getattr(network, "half_dtype", None)]
    for t in chain(network.parameters(), network.buffers()):
        version = -1 if t.is_inference() else t._version  # inference tensors keep no count
        key.append((t.data_ptr(), t.dtype, str(t.device), version))
    return tuple(key)


class GraphBackend(Protocol):
    """The seam between the bucket logic and the device: captures and replays graphs."""

    def staging(self, rows: int) -> np.ndarray:
        """A ``(rows, 48000)`` float32 host buffer the replays read from (pinned on a GPU)."""
        ...

    def capture(self, bucket: int) -> Replay:
        """Capture the forward pass of ``staging[:bucket]``; the returned replay runs it and
        returns ``(bucket, 6)`` float32 logits on the host, valid until the next replay."""
        ...

    def release(self) -> None:
        """Drop every graph, the memory pool and the staging buffer."""
        ...


class GraphedForward:
    """``(n, 48000)`` windows -> ``(n, 6)`` logits by replaying bucketed graphs.

    Not thread-safe: one caller (the executor's thread) owns it. Inputs above the largest
    bucket run in chunks of that bucket.
    """

    def __init__(
        self,
        backend: GraphBackend,
        key: Callable[[], Hashable],
        fallback: Forward,
        *,
        max_batch: int = DEFAULT_BUCKETS[-1],
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> None:
        """``key`` says what the graphs depend on (see :func:`weights_key`); ``fallback`` is
        the eager forward, used when a replay's output is not finite."""
        self.backend = backend
        self.key = key
        self.fallback = fallback
        top = bucket_for(min(max_batch, max(buckets)), buckets)
        self.buckets = tuple(b for b in sorted(set(buckets)) if b <= top)
        self.generation = 0
        """Bumped whenever the key changes; the graphs belong to one generation."""
        self.captures = self.replays = self.fallbacks = self.invalidations = 0
        self._key: Hashable = None
        self._graphs: dict[int, Replay] = {}
        self._staging: np.ndarray | None = None

    @classmethod
    def for_model(cls, em: EmotionModel, max_batch: int = DEFAULT_BUCKETS[-1]) -> GraphedForward:
        """Graphs of ``em``'s network on its CUDA device; the eager ``em.logits`` as fallback
        (it switches to fp32 on a non-finite fp16 output, which starts a new generation)."""
        if em.device.type != "cuda" or em.onnx is not None:
            raise ModelError("CUDA graphs need the torch backend on a CUDA device")
        return cls(
            CudaGraphBackend(em), lambda: weights_key(em.network), em.logits, max_batch=max_batch
        )

    @property
    def pool_bytes(self) -> int | None:
        """The memory the graphs' pool holds (where the backend measures it), else None."""
        value = getattr(self.backend, "reserved_bytes", None)
        return None if value is None else int(value)

    def capture(self) -> None:
        """Capture every bucket not yet captured, largest first (the first call does it too)."""
        self._check_generation()
        if self._staging is None:
            self._staging = self.backend.staging(self.buckets[-1])
        for b in reversed(self.buckets):
            if b not in self._graphs:
                self._graphs[b] = self.backend.capture(b)
                self.captures += 1

    def release(self) -> None:
        """Free the graphs now (they are captured again on the next call)."""
        self._graphs.clear()
        self._staging = None
        self.backend.release()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"expected (batch, {WINDOW_SAMPLES}) inputs, got {x.shape}")
        step = self.buckets[-1]
        parts = [self._run(x[i : i + step]) for i in range(0, len(x), step)]
        return np.concatenate(parts) if parts else np.zeros((0, NUM_CLASSES), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.capture()  # drops a stale generation; captures only what is missing
        assert self._staging is not None
        bucket = bucket_for(len(x), self.buckets)
        stage_rows(self._staging, x, bucket)
        out = self._graphs[bucket]()
        self.replays += 1
        if out.shape != (bucket, NUM_CLASSES):
            raise ValueError(f"a bucket-{bucket} replay returned {out.shape}")
        rows = np.array(out[: len(x)], dtype=np.float32)
        if not np.isfinite(rows).all():
            self.fallbacks += 1
            return np.asarray(self.fallback(x), dtype=np.float32)
        return rows

    def _check_generation(self) -> None:
        key = self.key()
        if key == self._key:
            return
        if self._graphs or self._staging is not None:
            self.invalidations += 1
            self.release()
        self._key = key
        self.generation += 1


class CudaGraphBackend:
    """Captures ``em.network`` as it is at capture time, on its device, in its dtype."""

    def __init__(self, em: EmotionModel) -> None:
        self.em = em
        self.reserved_bytes = 0
        """What the captures added to ``torch.cuda.memory_reserved``: the private pool's
        memory (activations, outputs), which the caching allocator cannot hand elsewhere."""
        self._pool: Any = None  # torch's opaque memory-pool handle
        self._graphs: list[torch.cuda.CUDAGraph] = []
        self._host_in: torch.Tensor | None = None
        self._device_in: torch.Tensor | None = None

    def staging(self, rows: int) -> np.ndarray:
        self._host_in = torch.zeros((rows, WINDOW_SAMPLES), dtype=torch.float32, pin_memory=True)
        self._device_in = torch.zeros((rows, WINDOW_SAMPLES), device=self.em.device)
        return self._host_in.numpy()

    def capture(self, bucket: int) -> Replay:
        assert self._host_in is not None and self._device_in is not None, "staging first"
        net, device, dtype = self.em.network, self.em.device, self.em.dtype
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        host_in, device_in = self._host_in[:bucket], self._device_in[:bucket]
        host_out = torch.zeros((bucket, NUM_CLASSES), dtype=torch.float32, pin_memory=True)
        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        self.em.apply_precision()  # the network's half flags are captured with it
        with torch.inference_mode():
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    net(device_in.to(dtype))
            torch.cuda.current_stream(device).wait_stream(side)
            torch.cuda.synchronize(device)
            reserved = torch.cuda.memory_reserved(device)
            with torch.cuda.graph(graph, pool=self._pool):
                # The cast to the compute dtype is captured too: the copy in stays float32.
                device_out = net(device_in.to(dtype)).float()
            self.reserved_bytes += torch.cuda.memory_reserved(device) - reserved
        self._graphs.append(graph)

        def replay() -> np.ndarray:
            stream = torch.cuda.current_stream(device)
            device_in.copy_(host_in, non_blocking=True)
            graph.replay()
            host_out.copy_(device_out, non_blocking=True)
            stream.synchronize()  # the one host wait of the batch
            return host_out.numpy()

        return replay

    def release(self) -> None:
        self._graphs.clear()
        self._pool = None
        self.reserved_bytes = 0
        self._host_in = self._device_in = None
        torch.cuda.empty_cache()
