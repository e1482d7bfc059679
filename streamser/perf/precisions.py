"""The bench's precision rows: fp32 and half side by side on the same inputs and weights.

Every precision asked for (``--precision``; fp32, the reference, always) runs on the optimised
path's own network: a second :class:`EmotionModel` shares it and sets its half flags for its
own passes (no weight is copied but the half copies the half path needs). Its forward passes
alternate run by run with the optimised path and the baseline (``stages.py``), so all of them
see the same load. int8 (``--precision int8`` or ``--quantize int8``) and onnxruntime
(``--backend onnxruntime``) have their own stages; their rows join the table afterwards.

Each row gives seconds per window, windows per second, the largest probability difference
from the fp32 row of the same batch, and the windows the half guard recomputed in fp32. A
row's label is decided after its timing, from what ran: a model that fell back to the CPU, or
whose half batches were recomputed in fp32, says so.

On a CPU, half means bf16. Without bf16 units it is slower than fp32 (14x on a Zen 3): a quick
GEMM probe decides, and a full-size run skips it with a note where the probe finds bf16 slower
(unless ``--precision`` names half explicitly; ``--quick`` always runs it, the tiny model costs
nothing). On CUDA, fp32 runs with TF32 off (``devices.strict_fp32``) and is measured against
the fp32 peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from streamser.model.devices import strict_fp32
from streamser.model.precision import resolve_precision
from streamser.model.runtime import EmotionModel
from streamser.perf.machine import cpu_gemm_gflops
from streamser.perf.timing import Forward, Timing, prob_diff

TORCH_PRECISIONS = ("fp32", "half", "half-fp16", "half-bf16")
"""What this stage runs; int8 has its own stage."""
BF16_PROBE_SHAPE = (149, 1024, 1024)
"""One window's rows through a 1024-wide layer: where the network spends its time."""


@dataclass(frozen=True)
class PrecisionRow:
    """One precision at one batch size; ``s_per_window`` None where it was skipped."""

    precision: str
    batch: int
    s_per_window: float | None
    windows_per_s: float | None
    max_abs_prob_diff_vs_fp32: float | None
    half_fallbacks: int | None
    note: str = ""

    @classmethod
    def timed(
        cls,
        precision: str,
        timing: Timing,
        logits: np.ndarray,
        fp32: np.ndarray,
        half_fallbacks: int | None,
        note: str = "",
    ) -> PrecisionRow:
        return cls(
            precision,
            timing.batch,
            timing.s_per_window,
            timing.windows_per_s,
            prob_diff(logits, fp32),
            half_fallbacks,
            note,
        )


def bf16_probe(reps: int = 5) -> dict[str, Any]:
    """fp32 against bf16 GEMM rates at :data:`BF16_PROBE_SHAPE` on this CPU (best of ``reps``
    after one warm-up each): a tenth of a second where bf16 is fast, under a second where not."""
    m, k, n = BF16_PROBE_SHAPE
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        gflops = cpu_gemm_gflops(m, k, n, dtype, warmups=1, trials=reps)
        rates[str(dtype).removeprefix("torch.")] = gflops
    return {
        "shape": "x".join(map(str, BF16_PROBE_SHAPE)),
        "gflop_per_s": rates,
        "bf16_faster": rates["bfloat16"] > rates["float32"],
    }


class PrecisionSet:
    """The models behind the precision rows, sharing ``em``'s network (see the module doc)."""

    def __init__(
        self, em: EmotionModel, requested: tuple[str, ...], *, explicit: bool, quick: bool
    ) -> None:
        """``requested``: precisions from :data:`TORCH_PRECISIONS` (others are ignored);
        ``explicit``: the user named them (a slow bf16 is then run all the same)."""
        self.em = em
        self.em_device = em.device.type
        self.models: dict[str, EmotionModel] = {}
        self.skipped: dict[str, str] = {}
        self.probe: dict[str, Any] | None = None
        wanted = ["fp32", *(p for p in requested if p in TORCH_PRECISIONS and p != "fp32")]
        for p in dict.fromkeys(wanted):
            kind, dtype = resolve_precision(p, em.device)
            if (kind, dtype) == (em.precision_kind, em.half_dtype):
                self.models[p] = em
                continue
            if dtype == torch.bfloat16 and em.device.type == "cpu":
                self.probe = self.probe or bf16_probe()
                if not self.probe["bf16_faster"] and not explicit and not quick:
                    self.skipped[p] = (
                        "skipped: bf16 GEMMs run slower than fp32 on this CPU (no bf16 units; "
                        f"probe {self.probe['gflop_per_s']['bfloat16']:.1f} against "
                        f"{self.probe['gflop_per_s']['float32']:.1f} GFLOP/s); "
                        "--precision half runs it anyway"
                    )
                    continue
            other = EmotionModel(em.network, em.info, em.device, p)
            other.threads = None  # fixed threads, as the optimised path
            self.models[p] = other
        em.apply_precision()  # the last model made set the shared network's flags
        self._fallbacks = dict.fromkeys(self.models, 0)

    def key(self, precision: str) -> str:
        """The provisional key of a precision's path while it is timed."""
        return f"precision {precision}"

    def paths(self) -> dict[str, Forward]:
        """The forward passes to time beside the optimised one (not ``em`` itself)."""
        out: dict[str, Forward] = {}
        for p, m in self.models.items():
            if m is self.em:
                continue
            strict = m.precision_kind == "fp32" and m.device.type == "cuda"
            out[self.key(p)] = _strict(m.logits) if strict else m.logits
        return out

    def fp32_keys(self, optimised_key: str) -> set[str]:
        """The keys of the paths timed in fp32 (their fraction is of the fp32 peak)."""
        return {
            optimised_key if m is self.em else self.key(p)
            for p, m in self.models.items()
            if m.precision_kind == "fp32"
        }

    def start_batch(self) -> None:
        """Note the guard's counters before a batch is timed."""
        self._fallbacks = {p: m.half_fallbacks for p, m in self.models.items()}

    def rows(
        self, measured: dict[str, tuple[Timing, np.ndarray]], optimised_key: str
    ) -> tuple[list[PrecisionRow], dict[str, str], np.ndarray]:
        """After a batch: the rows, each path's label (key -> what ran) and the fp32 logits."""
        keys = {p: optimised_key if m is self.em else self.key(p) for p, m in self.models.items()}
        fp32 = measured[keys["fp32"]][1]
        rows, labels = [], {}
        for p, m in self.models.items():
            timing, logits = measured[keys[p]]
            fallbacks = m.half_fallbacks - self._fallbacks[p]
            label, note = self.label(m, fallbacks, timing.batch * (timing.repeats + 1))
            if m is not self.em:
                labels[keys[p]] = f"optimised {m.describe()}"
            half = fallbacks if m.half_dtype is not None or fallbacks else None
            rows.append(PrecisionRow.timed(label, timing, logits, fp32, half, note))
        for p, why in self.skipped.items():
            rows.append(PrecisionRow(p, len(fp32), None, None, None, None, why))
        return rows, labels, fp32

    def label(self, m: EmotionModel, fallbacks: int, windows: int) -> tuple[str, str]:
        """What ran, and a note where it is not what was asked for: "half-fp16 + fp32
        fallback" where the guard recomputed windows, "fp32 (cpu fallback)" where the device
        failed and the model moved to the CPU."""
        label, notes = m.precision, []
        if m.device.type != self.em_device:
            label += f" ({m.device.type} fallback)"
            notes.append(f"the {self.em_device} failed: ran on the {m.device.type}")
        if fallbacks:
            label += " + fp32 fallback"
            notes.append(f"{fallbacks} of {windows} windows recomputed in fp32")
        return label, "; ".join(notes)

    def release(self) -> None:
        """Free the half copies (before int8 quantises the network in place)."""
        self.em.network.set_half(None, release=True)
        self.models.clear()


def _strict(forward: Forward) -> Forward:
    def run(x: np.ndarray) -> np.ndarray:
        with strict_fp32():
            return forward(x)

    return run


def rows_to_dicts(rows: list[PrecisionRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
