"""onnxruntime as an optional CPU backend (``--backend onnxruntime``).

Why it exists: 90 % of a window's FLOPs are GEMMs of 149 rows (one window's frames) by
1024-4096-wide weights. On AVX2 CPUs onnxruntime's MLAS kernels run those closer to the
machine's GEMM rate than MKL does through torch (figures in benchmarks/README.md). Torch
stays the default: it needs no export, runs on GPUs, adapts its thread count to contention and
offers int8.

How: the network is exported once per weights file (TorchScript exporter, opset 17, weights as
external data, dynamic batch axis) into streamser's cache beside the safetensors copy of the
weights, keyed by everything that changes the graph (config, streamser, torch and opset
versions). Later starts open the cached export. The export holds the network and its ONNX
copy at once (~6 GB peak for the published model, ~20 s on 2 cores), which is why it happens
once. An unwritable cache or a full disk exports into a temporary folder for this run only; a
cached export that onnxruntime cannot open is deleted and made again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert
from streamser.version import __version__

log = logging.getLogger("streamser")

ONNX_OPSET = 17
EXPORT_FILE = "model.onnx"
EXPORT_DISK_MARGIN_BYTES = 512 * 1024 * 1024
"""Free space kept beyond the export's own size before writing it to the cache."""
INSTALL_HINT = "pip install 'streamser[onnx]' (onnxruntime and onnx)"


def import_onnxruntime() -> ModuleType:
    """onnxruntime, or a one-line error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ModelError(f"--backend onnxruntime needs onnxruntime: {INSTALL_HINT}") from e
    return onnxruntime


def export_onnx(network: ExHubert, path: Path) -> float:
    """Write ``network`` (fp32, CPU) as ONNX to ``path``; returns the seconds it took.

    The fast paths (strided views in the feature encoder, cached derived weights) do not
    trace, so the export uses the plain math with SDPA attention; onnxruntime fuses its own
    way. The fast paths are switched back on afterwards.
    """
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError as e:
        raise ModelError(f"exporting to ONNX needs onnx: {INSTALL_HINT}") from e
    network.set_fast_paths(False)
    network.set_attention("sdpa")
    t0 = time.perf_counter()
    try:
        # fp32 throughout, whatever half flags a model sharing the network left set
        with torch.no_grad(), network.fp32(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter
            torch.onnx.export(
                network,
                (torch.zeros(1, WINDOW_SAMPLES),),
                str(path),
                input_names=["input_values"],
                output_names=["logits"],
                dynamic_axes={"input_values": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
                external_data=True,
            )
    except OSError:
        raise
    except Exception as e:  # the exporter's own errors: say what to do instead
        raise ModelError(f"exporting the model to ONNX failed ({e}): use --backend torch") from e
    finally:
        network.set_fast_paths(True)  # the runtime's settings (SDPA included)
    return time.perf_counter() - t0


def export_tag(network: ExHubert) -> str:
    """What makes one export differ from another for the same weights file."""
    ident = {
        "config": network.config.to_dict(),
        "streamser": __version__,
        "torch": torch.__version__.split("+")[0],
        "opset": ONNX_OPSET,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _export_bytes(network: ExHubert) -> int:
    return sum(p.numel() * p.element_size() for p in network.state_dict().values())


class OnnxExport:
    """An ONNX file of the network: in the cache (kept) or in a temporary folder (this run)."""

    def __init__(self, path: Path, export_s: float | None, temporary: Path | None) -> None:
        self.path = path
        self.export_s = export_s
        """Seconds spent exporting now; None when a cached export was reused."""
        self._temporary = temporary

    @property
    def cached(self) -> bool:
        return self._temporary is None

    def discard(self) -> None:
        """Delete the files (a temporary export once the session holds the weights; a
        cached one that onnxruntime could not open)."""
        shutil.rmtree(self._temporary or self.path.parent, ignore_errors=True)


def cache_dir_for(weights_path: str | None, network: ExHubert) -> Path | None:
    """Where the export of these weights lives: beside their safetensors copy; None for
    networks without a weights file (random weights, the demo model)."""
    if weights_path is None:
        return None
    from streamser.model.loading import weights_cache_dir

    record_dir = weights_cache_dir(Path(weights_path))
    return None if record_dir is None else record_dir / f"onnx-{export_tag(network)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _tidy(target: Path) -> None:
    """Remove what earlier exports left beside ``target``: partial exports of processes that
    died, and exports made by other streamser or torch versions (2.7 GB each)."""
    for old in target.parent.glob("onnx-*"):
        _, _, pid = old.name.partition(".partial-")
        stale = (pid.isdigit() and not _alive(int(pid))) if pid else old.name != target.name
        if stale:
            log.info("removing an old ONNX export: %s", old)
            shutil.rmtree(old, ignore_errors=True)


def prepare_export(network: ExHubert, weights_path: str | None) -> OnnxExport:
    """The cached export of these weights, made now if missing (or in a temporary folder)."""
    target = cache_dir_for(weights_path, network)
    if target is not None and (target / EXPORT_FILE).is_file():
        return OnnxExport(target / EXPORT_FILE, None, None)
    if target is not None:
        _tidy(target)
        needed = _export_bytes(network) + EXPORT_DISK_MARGIN_BYTES
        free = shutil.disk_usage(target.parent).free
        if free >= needed:
            partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                partial.mkdir(parents=True)
                log.info("exporting the model to ONNX once (%s)", target)
                export_s = export_onnx(network, partial / EXPORT_FILE)
                try:
                    os.replace(partial, target)
                except OSError:
                    if not (target / EXPORT_FILE).is_file():
                        raise
                    shutil.rmtree(partial, ignore_errors=True)  # another process finished first
                return OnnxExport(target / EXPORT_FILE, export_s, None)
            except OSError as e:
                shutil.rmtree(partial, ignore_errors=True)
                log.warning("could not cache the ONNX export in %s (%s)", target, e)
        else:
            log.warning(
                "not enough free disk space to cache the ONNX export in %s (needs %.2f GB, "
                "%.2f GB free): exporting for this run only",
                target.parent,
                needed / 1e9,
                free / 1e9,
            )
    temporary = Path(tempfile.mkdtemp(prefix="streamser-onnx-"))
    try:
        export_s = export_onnx(network, temporary / EXPORT_FILE)
    except OSError as e:
        raise ModelError(
            f"could not write the ONNX export to {temporary} ({e}): free some disk space "
            "or use --backend torch"
        ) from e
    finally:
        if not (temporary / EXPORT_FILE).is_file():
            shutil.rmtree(temporary, ignore_errors=True)
    return OnnxExport(temporary / EXPORT_FILE, export_s, temporary)


class OnnxForward:
    """One onnxruntime session computing logits from preprocessed (batch, 48000) windows.

    The thread count is fixed when the session is made (onnxruntime cannot change it later),
    so the runtime's adaptive thread count does not apply to this backend. Its worker threads
    block instead of spinning while they wait: on 2 cores with another process keeping one
    busy, a spinning pool is slower than one thread, while blocking costs little on an idle
    machine (benchmarks/README.md).
    """

    def __init__(self, path: Path, threads: int) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings are about graph details
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = max(1, threads)
        self.export_s: float | None = None
        """Seconds this start spent exporting; None when a cached export was reused."""
        self.version: str = ort.__version__
        self.session: Any = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        (logits,) = self.session.run(["logits"], {"input_values": x})
        return np.asarray(logits, dtype=np.float32).reshape(-1, NUM_CLASSES)


def open_onnx(network: ExHubert, weights_path: str | None, threads: int) -> OnnxForward:
    """Export (once) and open the network in onnxruntime; the files of a temporary export
    are deleted as soon as the session has read them."""
    import_onnxruntime()  # fail before a 20 s export, not after
    export = prepare_export(network, weights_path)
    try:
        forward = OnnxForward(export.path, threads)
    except Exception as e:  # onnxruntime raises its own exception types
        if not export.cached:
            export.discard()
            raise ModelError(f"onnxruntime could not open the exported model: {e}") from e
        log.warning("the cached ONNX export could not be opened (%s): exporting it again", e)
        export.discard()
        export = prepare_export(network, weights_path)
        try:
            forward = OnnxForward(export.path, threads)
        except Exception as e2:
            export.discard()
            raise ModelError(f"onnxruntime could not open the exported model: {e2}") from e2
    if not export.cached:
        export.discard()
    forward.export_s = export.export_s
    return forward
