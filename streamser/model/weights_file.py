"""Reading and writing weight files without holding more than one model copy in memory.

* ``.bin`` (a torch pickle) is read with ``torch.load(weights_only=True, mmap=True)`` only: no
  arbitrary unpickling, and the tensors stay on disk until touched.
* The safetensors copy in streamser's cache is written tensor by tensor straight from those
  memory-mapped tensors, so peak memory stays near one model copy on an 8 GB laptop.
* sha256 is streamed in 8 MiB blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from streamser.model.errors import ModelError

HASH_BLOCK_BYTES = 8 * 1024 * 1024
PROGRESS_MIN_BYTES = 200 * 1024 * 1024
"""Files larger than this get a progress bar when hashed or converted."""

_ST_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _progress(total: int, desc: str) -> Callable[[int], None]:
    """A tqdm bar on stderr for big files; a no-op for small ones."""
    if total < PROGRESS_MIN_BYTES:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def sha256_file(path: Path) -> str:
    """Stream the file through sha256 (2.67 GB takes a few seconds, so it is done once)."""
    size = path.stat().st_size
    update = _progress(size, f"verifying {path.name}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK_BYTES):
            h.update(block)
            update(len(block))
    return h.hexdigest()


def load_torch_bin(path: Path) -> dict[str, torch.Tensor]:
    """Load a torch checkpoint with weights_only=True, memory-mapped when the format allows."""
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e).lower():
                raise
            # Legacy (non-zip) checkpoints cannot be memory-mapped; read them whole.
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        size = path.stat().st_size if path.exists() else 0
        raise ModelError(
            f"cannot read weights file {path} ({size:,} bytes): it is truncated or corrupt "
            f"({type(e).__name__}). Delete it and download it again (streamser model fetch)."
        ) from e
    if not isinstance(sd, Mapping):
        raise ModelError(f"weights file {path} does not hold a state dict")
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    return {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map a safetensors file (later starts read only the pages they touch)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(
            f"cannot read weights file {path}: it is truncated or corrupt ({e}). "
            "Delete it and load the model again."
        ) from e


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` as safetensors, one tensor at a time, atomically (temp file + rename)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    order = list(tensors)
    for name in order:
        t = tensors[name]
        if t.dtype not in _ST_DTYPES:
            raise ModelError(f"tensor {name} has unsupported dtype {t.dtype}")
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-(8 + len(blob)) % 8)
    update = _progress(offset, f"converting to {path.name}")
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for name in order:
                t = tensors[name].detach().contiguous().reshape(-1)
                if t.dtype == torch.bfloat16:
                    t = t.view(torch.int16)
                data = t.numpy().data.cast("B")
                f.write(data)
                update(len(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
