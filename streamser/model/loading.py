"""Finding, fetching, verifying and loading ExHuBERT weights.

Where weights come from (``resolve_source``):

* ``"demo"``: a small random-weight model built in-process (see ``demo``);
* a local directory with ``config.json`` and ``pytorch_model.bin`` or ``model.safetensors``;
* a Hugging Face hub id (default ``amiriparian/ExHuBERT`` at the model card's revision), through
  the standard HF cache: downloaded when online, fully offline when cached or ``HF_HUB_OFFLINE=1``.
  Only ``config.json`` and the weights are fetched, never the remote code or other files.

The first load of a ``.bin`` verifies its sha256 (against the hub's content hash, the published
hash, or one given explicitly), writes a safetensors copy into streamser's cache tensor by tensor,
and records both in ``source.json`` beside the copy. Later starts find that record (matched on the
source file's path, size and mtime), skip hashing and memory-map the copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from streamser.constants import (
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_REVISION,
    PUBLISHED_WEIGHTS_BYTES,
    PUBLISHED_WEIGHTS_SHA256,
)
from streamser.contracts import ModelInfo
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert, ExHubertConfig, build_on_meta, canonical_key
from streamser.model.weights_file import (
    load_safetensors,
    load_torch_bin,
    sha256_file,
    write_safetensors,
)

log = logging.getLogger("streamser")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DISK_MARGIN_BYTES = 256 * 1024 * 1024
"""Free space left over after the safetensors copy, so the copy never fills a disk."""
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def cache_root() -> Path:
    """streamser's own cache (safetensors copies and verification records)."""
    env = os.environ.get("STREAMSER_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_cache_path("streamser")


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class WeightSource:
    name: str
    kind: str
    revision: str | None
    config_path: Path
    weights_path: Path
    expected_sha256: str | None


def resolve_source(
    spec: str, revision: str | None = None, expected_sha256: str | None = None
) -> WeightSource:
    """Turn ``--model`` into files on disk (downloading from the hub only when needed)."""
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return _local_source(path, expected_sha256)
    if spec.count("/") != 1:
        raise ModelError(
            f"model {spec!r} is neither a directory nor a hub id like 'owner/name' "
            "(or 'demo' for the built-in random-weight model)"
        )
    source = _hub_source(spec, revision, expected_sha256)
    assert source is not None  # a download either finds the files or raises
    return source


def _local_source(path: Path, expected_sha256: str | None) -> WeightSource:
    if not path.exists():
        raise ModelError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelError(f"model path {path} is not a directory (it needs config.json + weights)")
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"model directory {path} has no config.json")
    for name in WEIGHT_FILES:
        weights = path / name
        if weights.is_file():
            break
    else:
        raise ModelError(f"model directory {path} has neither {' nor '.join(WEIGHT_FILES)}")
    expected = expected_sha256
    if expected is None and weights.stat().st_size == PUBLISHED_WEIGHTS_BYTES:
        expected = PUBLISHED_WEIGHTS_SHA256
    return WeightSource(str(path), "local", None, config, weights, expected)


def cached_source(spec: str, revision: str | None = None) -> WeightSource | None:
    """Like :func:`resolve_source`, but never downloading: None when a hub model's files are
    not (all) in the Hugging Face cache."""
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return resolve_source(spec, revision)
    return _hub_source(spec, revision, None, download=False)


def hub_revision(repo_id: str, revision: str | None) -> str:
    """The revision a hub model is read at: the model card's for the default model."""
    return revision or (DEFAULT_MODEL_REVISION if repo_id == DEFAULT_MODEL_ID else "main")


def _hub_source(
    repo_id: str, revision: str | None, expected_sha256: str | None, *, download: bool = True
) -> WeightSource | None:
    rev = hub_revision(repo_id, revision)
    config = hub_file(repo_id, "config.json", rev, cached_only=not download)
    weights = None
    for name in WEIGHT_FILES:
        weights = hub_file(repo_id, name, rev, cached_only=True)
        if weights is not None:
            break
    if weights is None and download:
        weights = hub_file(repo_id, "pytorch_model.bin", rev)
    if config is None or weights is None:
        if not download:
            return None
        raise ModelError(f"{repo_id}: the hub returned no config.json or weights file")
    expected = expected_sha256
    if expected is None:
        blob = weights.resolve().name
        if _SHA256_RE.match(blob):
            expected = blob  # the HF cache names LFS blobs by their sha256
        elif repo_id == DEFAULT_MODEL_ID and rev == DEFAULT_MODEL_REVISION:
            expected = PUBLISHED_WEIGHTS_SHA256
    return WeightSource(repo_id, "hub", rev, config, weights, expected)


def hub_file(repo_id: str, filename: str, revision: str, cached_only: bool = False) -> Path | None:
    """One file from the HF cache, downloading it (with a progress bar) when allowed and needed."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
        if cached_only:
            return None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if offline:
        raise ModelError(
            f"{repo_id}@{revision[:12]} {filename} is not in the Hugging Face cache and "
            "HF_HUB_OFFLINE is set: fetch it once online (streamser model fetch) or pass "
            "--model /path/to/dir"
        )
    try:
        _check_hub_reachable()
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception as e:  # network, auth, missing revision: all end in the same advice
        raise ModelError(
            f"cannot download {filename} of {repo_id}@{revision[:12]} from the Hugging Face hub "
            f"({type(e).__name__}): connect to the internet and run 'streamser model fetch', "
            "or copy a Hugging Face cache that holds it (HF_HOME) and set HF_HUB_OFFLINE=1, "
            "or pass --model /path/to/dir"
        ) from e


def _check_hub_reachable() -> None:
    """Fail in milliseconds when the hub's host does not resolve, instead of ~20 s of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise ConnectionError(f"cannot resolve {host}") from e


# ----------------------------------------------------------------------------- cache


def _cache_key(weights: Path) -> str:
    import hashlib

    st = weights.stat()
    ident = f"{weights.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def _read_record(record_path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_record(record_path: Path, record: dict[str, Any]) -> None:
    tmp = record_path.with_name(record_path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, record_path)


def _verify(source: WeightSource, sha: str | None, verify: bool) -> str:
    if sha is None:
        return "skipped (--no-verify)"
    if source.expected_sha256 is None:
        return "no reference hash (computed once, recorded)"
    if sha == source.expected_sha256:
        return "verified"
    if verify:
        raise ModelError(
            f"sha256 of {source.weights_path} is {sha[:16]}..., expected "
            f"{source.expected_sha256[:16]}...: the file is corrupt or not the published one. "
            "Delete it and download again, or pass --no-verify to load it anyway"
        )
    return "MISMATCH (loaded anyway: --no-verify)"


# ----------------------------------------------------------------------------- loading


def check_state_dict(model: ExHubert, state: dict[str, torch.Tensor]) -> None:
    """Strict key and shape check whose error names what is missing, unexpected or misshapen."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    misshapen = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
        if misshapen:
            shapes = [f"{k} {have[k]} != {want[k]}" for k in misshapen]
            parts.append(f"{len(misshapen)} wrong shape(s): {_few(shapes)}")
        raise ModelError(
            "weights do not match the ExHuBERT architecture of config.json (wrong model?): "
            + "; ".join(parts)
        )
    bad = sorted(k for k, v in state.items() if not v.is_floating_point())
    if bad:
        raise ModelError(f"weights have non-floating-point tensors: {_few(bad)}")


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {canonical_key(k): v for k, v in state.items()}


def _materialise(cfg: ExHubertConfig, state: dict[str, torch.Tensor]) -> ExHubert:
    model = build_on_meta(cfg)
    check_state_dict(model, state)
    fp32 = {k: (v if v.dtype == torch.float32 else v.float()) for k, v in state.items()}
    model.load_state_dict(fp32, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_network(
    spec: str,
    revision: str | None = None,
    verify: bool = True,
    expected_sha256: str | None = None,
) -> tuple[ExHubert, ModelInfo]:
    """Load an fp32 CPU network from ``spec``; the caller moves it to its compute device."""
    if spec == "demo":
        from streamser.model.demo import build_demo_network

        return build_demo_network()
    t0 = time.perf_counter()
    source = resolve_source(spec, revision, expected_sha256)
    try:
        cfg = ExHubertConfig.from_json_file(source.config_path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot use {source.config_path}: {e}") from e
    weights = source.weights_path
    if weights.suffix == ".safetensors":
        state, loaded_from, sha, status = _load_safetensors_source(source, verify)
    else:
        state, loaded_from, sha, status = _load_bin_source(source, cfg, verify)
    model = _materialise(cfg, state)
    info = ModelInfo(
        name=source.name,
        kind=source.kind,
        revision=source.revision,
        config_path=str(source.config_path),
        weights_path=str(weights),
        loaded_from=str(loaded_from),
        size_bytes=weights.stat().st_size,
        sha256=sha,
        sha256_status=status,
        n_params=sum(v.numel() for v in state.values()),
    )
    return model, replace(info, load_s=time.perf_counter() - t0)


def _load_safetensors_source(
    source: WeightSource, verify: bool
) -> tuple[dict[str, torch.Tensor], Path, str | None, str]:
    sha, status = None, "not hashed (safetensors without a reference hash)"
    if source.expected_sha256 is not None:
        sha, status = _cached_verdict(source, verify)
    return _canonical(load_safetensors(source.weights_path)), source.weights_path, sha, status


def _cached_verdict(source: WeightSource, verify: bool) -> tuple[str | None, str]:
    """Hash once per source file, remembering the verdict in streamser's cache."""
    record_dir = weights_cache_dir(source.weights_path)
    record = _read_record(record_dir / "source.json") if record_dir else None
    if record and record.get("expected_sha256") == source.expected_sha256:
        sha = record.get("sha256")
    else:
        sha = sha256_file(source.weights_path) if verify else None
    status = _verify(source, sha, verify)
    if record_dir is not None and sha is not None:
        try:
            _write_record(record_dir / "source.json", _record(source, sha, status, None))
        except OSError as e:
            log.warning("could not remember the sha256 verdict in %s: %s", record_dir, e)
    return sha, status


def weights_cache_dir(weights: Path) -> Path | None:
    """streamser's cache folder for one weights file (verdict, safetensors copy, ONNX export),
    created if needed; None, with a warning, where the cache cannot be written."""
    d = cache_root() / "models" / _cache_key(weights)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("streamser cache %s is not writable (%s): nothing is cached", d, e)
        return None
    return d


def _record(
    source: WeightSource, sha: str | None, status: str, copy: Path | None
) -> dict[str, Any]:
    st = source.weights_path.stat()
    return {
        "source": str(source.weights_path.resolve()),
        "size_bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha,
        "expected_sha256": source.expected_sha256,
        "status": status,
        "safetensors": str(copy) if copy else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _load_bin_source(
    source: WeightSource, cfg: ExHubertConfig, verify: bool
) -> tuple[dict[str, torch.Tensor], Path, str | None, str]:
    record_dir = weights_cache_dir(source.weights_path)
    if record_dir is not None:
        record = _read_record(record_dir / "source.json")
        copy = record_dir / "model.safetensors"
        if record and record.get("safetensors") and copy.is_file():
            sha, status = record.get("sha256"), str(record.get("status"))
            if verify and (sha is None or status.startswith("MISMATCH")):
                # Converted earlier with --no-verify: verify now, once, and remember it.
                sha = sha if sha is not None else sha256_file(source.weights_path)
                status = _verify(source, sha, verify)
                _write_record(record_dir / "source.json", _record(source, sha, status, copy))
            return load_safetensors(copy), copy, sha, status
    state = _canonical(load_torch_bin(source.weights_path))
    check_state_dict(build_on_meta(cfg), state)
    sha = sha256_file(source.weights_path) if verify else None
    status = _verify(source, sha, verify)
    if record_dir is None:
        return state, source.weights_path, sha, status
    copy = record_dir / "model.safetensors"
    needed = sum(v.numel() * v.element_size() for v in state.values())
    free = shutil.disk_usage(record_dir).free
    if free < needed + DISK_MARGIN_BYTES:
        log.warning(
            "not enough free disk space for the fast-start copy of the weights in %s "
            "(needs %.2f GB, %.2f GB free): loading from the original file each time",
            record_dir,
            needed / 1e9,
            free / 1e9,
        )
        return state, source.weights_path, sha, status
    try:
        write_safetensors(state, copy, metadata={"format": "pt", "source_sha256": sha or ""})
        _write_record(record_dir / "source.json", _record(source, sha, status, copy))
    except OSError as e:
        log.warning("could not write the fast-start copy to %s (%s): using the original", copy, e)
        return state, source.weights_path, sha, status
    return load_safetensors(copy), copy, sha, status
