"""Which numeric precision the network runs in: the choices, the ``auto`` rule, stored verdicts.

Choices (``load_model(precision=...)``, later ``--precision``):

* ``fp32``: everything fp32, the reference.
* ``half``: the mixed path of ``ExHubert.set_half``: the matmul-heavy blocks in fp16 on CUDA and
  MPS, in bf16 on a CPU (x86 CPUs have no fp16 arithmetic; bf16 has fp32's range); the residual
  stream, its LayerNorms, the 48 gates and the head in fp32. Every half batch is checked, and
  non-finite rows are recomputed in fp32 from the fp32 master weights (``EmotionModel``).
  ``half-fp16`` and ``half-bf16`` name the half dtype explicitly, for checks and benchmarks
  (fp16 on a CPU is correct but very slow).
* ``int8``: dynamic int8 quantisation of the attention and feed-forward layers (CPU only).
* ``auto``: :func:`choose_precision` for the device and CPU, unless a verdict measured on this
  machine for this model and streamser version (:func:`read_verdict`) says otherwise.

Verdicts are small JSON files in streamser's cache (``<cache>/precision/<key>.json``), one per
(machine, model, streamser version); a future ``streamser tune`` writes them with
:func:`write_verdict`. The machine is identified by the CPU's model name and a hash of its
flags, so a VM moved to another host type measures again instead of trusting a stale verdict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from streamser.constants import PRECISIONS
from streamser.model.errors import ModelError

log = logging.getLogger("streamser")

Precision = Literal["auto", "fp32", "half", "int8"]
PRECISION_CHOICES: tuple[str, ...] = PRECISIONS
EXPLICIT_HALF: dict[str, torch.dtype] = {"half-fp16": torch.float16, "half-bf16": torch.bfloat16}
"""Half with its dtype named, accepted besides :data:`PRECISION_CHOICES`."""
RESOLVED: tuple[str, ...] = ("fp32", "half", "int8")
"""What :func:`choose_precision` returns and a verdict may hold."""

RELEVANT_FLAGS: tuple[str, ...] = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
"""/proc/cpuinfo flags that decide the rule; all flags enter the machine key."""


@dataclass(frozen=True)
class CpuCaps:
    """What the CPU offers the network's arithmetic (see :func:`cpu_caps`)."""

    model_name: str
    capability: str
    """``torch.backends.cpu.get_cpu_capability()``: "DEFAULT", "AVX2", "AVX512", "SVE256"..."""
    amx: bool
    """AMX tiles: bf16 (and int8) matrix units, Intel Sapphire Rapids and later."""
    avx512_bf16: bool
    """bf16 dot products in AVX-512 (Intel Cooper Lake, AMD Zen 4 and later)."""
    flags: tuple[str, ...] = field(default=(), compare=False)
    """Every flag the OS lists (sorted); empty where it lists none (macOS, Windows)."""

    @property
    def machine_key(self) -> str:
        """Model name plus a hash of all flags: what a stored verdict is keyed by."""
        probes = f"amx={self.amx} avx512_bf16={self.avx512_bf16} "
        digest = hashlib.sha256((probes + " ".join(self.flags)).encode()).hexdigest()[:12]
        return f"{self.model_name} [{self.capability}] flags:{digest}"

    @property
    def avx2(self) -> bool:
        return self.capability.startswith(("AVX2", "AVX512")) or "avx2" in self.flags

    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.flags]


def cpu_caps() -> CpuCaps:
    """This machine's :class:`CpuCaps`, from torch's CPU probes and /proc/cpuinfo (Linux)."""
    name = platform.processor() or platform.machine()
    flags: tuple[str, ...] = ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = tuple(sorted(value.split()))
    except OSError:
        pass
    probe = getattr(torch, "cpu", None)

    def has(fn: str) -> bool:
        f = getattr(probe, fn, None)
        try:
            return bool(f()) if callable(f) else False
        except Exception:  # a probe that fails is a feature we do not use
            return False

    return CpuCaps(
        model_name=name,
        capability=torch.backends.cpu.get_cpu_capability(),
        amx=has("_is_amx_tile_supported") or "amx_bf16" in flags,
        avx512_bf16=has("_is_avx512_bf16_supported") or "avx512_bf16" in flags,
        flags=flags,
    )


def choose_precision(
    device: torch.device, cpu_caps: CpuCaps, measured_verdict: str | None = None
) -> str:
    """What ``precision="auto"`` runs: "fp32", "half" or "int8".

    A verdict measured on this machine (``streamser tune``) wins: it saw the real weights and
    the real load. Without one:

    * CUDA: half. GPUs multiply fp16 many times faster than fp32, and the mixed path keeps
      the residual stream, which outgrows fp16, in fp32; the guard recomputes what still
      overflows.
    * MPS: fp32. The half path is untested on Apple GPUs here; a parity self-test against the
      fixture at load time could enable it later.
    * CPU with AMX tiles (Intel Sapphire Rapids and later): half in bf16. AMX multiplies
      bf16 matrices several times faster than AVX-512 multiplies fp32 or int8 ones. Not
      measured here (no such CPU at hand); a stored verdict corrects it where wrong.
    * Other x86 CPUs with AVX2: int8. fbgemm's int8 kernels (AVX2, or AVX-512 VNNI) measured
      faster than fp32 on a CPU without bf16 units (where bf16 is emulated and slower than
      fp32) and faster than both fp32 and the bf16 half path on one with AVX-512 BF16 (AMD
      Zen 4), whose bf16 GEMMs run at about twice the fp32 rate but still lose to int8. int8
      deviates from fp32 more than bf16 does, but far less than what moves an estimate.
    * Anything else (no AVX2, or an ARM CPU): fp32; nothing else was measured there.

    Figures: benchmarks/README.md, "Precision per CPU".
    """
    if measured_verdict is not None:
        if measured_verdict not in RESOLVED:
            raise ModelError(
                f"stored precision verdict {measured_verdict!r} is not one of "
                f"{', '.join(RESOLVED)}: delete it (streamser cache) and measure again"
            )
        if measured_verdict == "int8" and device.type != "cpu":
            return "half" if device.type == "cuda" else "fp32"
        return measured_verdict
    if device.type == "cuda":
        return "half"
    if device.type != "cpu":
        return "fp32"
    if cpu_caps.amx:
        return "half"
    if cpu_caps.avx2:
        return "int8"
    return "fp32"


def half_dtype_for(device: torch.device) -> torch.dtype:
    """fp16 on GPUs (their fast units, and more mantissa); bf16 on CPUs, whose fp16 math is a
    slow software path and whose bf16 units, where present, are the fast ones."""
    return torch.bfloat16 if device.type == "cpu" else torch.float16


def precision_label(precision: str, half_dtype: torch.dtype | None) -> str:
    """The path as the status line shows it: "fp32", "int8", "half-bf16" or "half-fp16"."""
    if precision != "half":
        return precision
    return "half-bf16" if half_dtype == torch.bfloat16 else "half-fp16"


def check_precision(precision: str) -> None:
    if precision not in PRECISION_CHOICES and precision not in EXPLICIT_HALF:
        raise ModelError(
            f"unknown --precision {precision!r}: choose one of {', '.join(PRECISION_CHOICES)}"
        )


def resolve_precision(
    precision: str | None, device: torch.device, quantised: bool = False
) -> tuple[str, torch.dtype | None]:
    """A choice (None: the device's default, as before the choice existed: half on CUDA, else
    fp32; int8 for a network already ``quantised``) -> ("fp32" | "half" | "int8", half dtype).

    ``auto`` here applies :func:`choose_precision` without a stored verdict; ``load_model``
    reads the verdict first, since it knows the model's identity.
    """
    if precision is None:
        precision = "int8" if quantised else ("half" if device.type == "cuda" else "fp32")
    check_precision(precision)
    if precision == "auto":
        precision = "int8" if quantised else choose_precision(device, cpu_caps())
    if quantised and precision != "int8":
        raise ModelError(f"--precision {precision}: the network is int8-quantised already")
    if precision == "int8" and device.type != "cpu":
        raise ModelError("--precision int8 runs on the CPU: add --compute cpu")
    if precision in EXPLICIT_HALF:
        return "half", EXPLICIT_HALF[precision]
    if precision == "half":
        return "half", half_dtype_for(device)
    return precision, None


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What a measurement on one machine decided for one model and streamser version."""

    machine: str
    model: str
    streamser_version: str
    precision: str
    rows: tuple[dict[str, Any], ...] = ()
    """The measured figures behind it (one dict per path), for ``model info`` to show."""
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = list(self.rows)
        return d


def _version() -> str:
    """The installed streamser's version, read from its metadata: importing the package's
    ``__init__`` from here would make the model layer depend on the top one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamser")
    except PackageNotFoundError:
        return "unknown"


def verdict_path(model: str, caps: CpuCaps | None = None, version: str | None = None) -> Path:
    """Where the verdict for ``model`` (see :func:`model_identity`) on this machine lives."""
    from streamser.model.loading import cache_root

    caps = caps or cpu_caps()
    ident = "\n".join((caps.machine_key, model, version or _version()))
    return cache_root() / "precision" / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"


def read_verdict(
    model: str, caps: CpuCaps | None = None, version: str | None = None
) -> Verdict | None:
    """The stored verdict for this machine, model and version; None where there is none or it
    cannot be read (a broken file is ignored with a warning, never fatal)."""
    caps = caps or cpu_caps()
    version = version or _version()
    path = verdict_path(model, caps, version)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        v = Verdict(
            machine=str(d["machine"]),
            model=str(d["model"]),
            streamser_version=str(d["streamser_version"]),
            precision=str(d["precision"]),
            rows=tuple(d.get("rows") or ()),
            created=str(d.get("created", "")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable precision verdict %s (%s)", path, e)
        return None
    if (v.machine, v.model, v.streamser_version) != (caps.machine_key, model, version):
        return None  # a hash collision or a hand-copied file: not ours
    if v.precision not in RESOLVED:
        log.warning("ignoring precision verdict %s: unknown precision %r", path, v.precision)
        return None
    return v


def write_verdict(
    model: str,
    precision: str,
    rows: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
    caps: CpuCaps | None = None,
    version: str | None = None,
) -> Path:
    """Store ``precision`` as this machine's verdict for ``model``; returns the file written."""
    if precision not in RESOLVED:
        raise ModelError(f"precision verdict must be one of {', '.join(RESOLVED)}")
    caps = caps or cpu_caps()
    version = version or _version()
    verdict = Verdict(
        caps.machine_key,
        model,
        version,
        precision,
        tuple(rows),
        time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    path = verdict_path(model, caps, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(verdict.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def model_identity(info: Any) -> str:
    """A model's identity for verdicts: its weights' sha256 where known, else its name and
    parameter count (``info`` is a ``ModelInfo``)."""
    sha = getattr(info, "sha256", None)
    if sha:
        return f"sha256:{sha}"
    return f"{getattr(info, 'kind', '?')}:{getattr(info, 'name', '?')}:{info.n_params}"
