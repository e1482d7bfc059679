"""What ``streamser bench`` runs: :class:`BenchOptions`."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BenchOptions:
    """What to run; ``None`` fields take defaults that depend on the device and ``quick``."""

    quick: bool = False
    """Tiny architecture, batches 1 and 2, 2 repeats: a smoke run in seconds."""
    batch_sizes: tuple[int, ...] | None = None
    repeats: int | None = None
    compute: str = "auto"
    quantize: str | None = None
    baseline: bool = True
    baseline_batch_sizes: tuple[int, ...] | None = None
    threads: int | None = None
    model: str | None = None
    """Weights to load (hub id or directory); ``None``: seeded random weights."""
    cuda_graphs: bool = True
    onnxruntime: bool = False
    """Also time the optional onnxruntime backend (CPU, fp32)."""
    precisions: tuple[str, ...] | None = None
    """Precisions timed side by side (fp32 always, as the reference); ``None``: fp32 and
    half, and int8 with ``quantize``."""

    def resolved_precisions(self) -> tuple[str, ...]:
        chosen = self.precisions or ("fp32", "half")
        if self.quantize == "int8":
            chosen = (*chosen, "int8")
        return tuple(dict.fromkeys(("fp32", *chosen)))

    @property
    def int8(self) -> bool:
        """Whether the int8 stage runs (``--quantize int8`` or ``--precision ...,int8``)."""
        return "int8" in self.resolved_precisions()

    def resolved_batch_sizes(self, device: torch.device) -> tuple[int, ...]:
        if self.batch_sizes:
            return self.batch_sizes
        if self.quick:
            return (1, 2)
        return (1, 4, 16, 64) if device.type == "cuda" else (1, 4, 16)

    def resolved_repeats(self) -> int:
        return self.repeats if self.repeats is not None else (2 if self.quick else 5)

    def resolved_baseline_batch_sizes(self, device: torch.device) -> tuple[int, ...]:
        """The eager baseline is slow on a CPU: by default only the batches the published
        reference figures exist for (1 and 4), everywhere else every batch size."""
        if not self.baseline:
            return ()
        if self.baseline_batch_sizes:
            return self.baseline_batch_sizes
        sizes = self.resolved_batch_sizes(device)
        if device.type == "cpu" and not self.quick:
            return tuple(b for b in sizes if b <= 4) or sizes[:1]
        return sizes
