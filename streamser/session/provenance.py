"""What made an offline analysis result: ``<output>.meta.json``, the model the sessions' live
runs used, and the checks that keep one result to one model and one set of window settings
when a run resumes."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from streamser.config import AnalyzeConfig, ConfigError
from streamser.contracts import AnalysisModel
from streamser.labels import DEMO_WARNING
from streamser.version import __version__

PROVENANCE_SUFFIX = ".meta.json"
INT8_SUFFIX = " (int8)"
"""What ``--quantize int8`` appends to the model's name (see ``model.runtime.load_model``)."""


def provenance_path(out: Path) -> Path:
    """``<output>.meta.json``: what made the result."""
    return out.with_name(out.name + PROVENANCE_SUFFIX)


def timestamp() -> str:
    """The current local wall time to the second, ISO 8601 with its UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


class InputsStatus:
    """Each input's status for the provenance file, in order: earlier runs' inputs first."""

    def __init__(self, earlier: dict[str, Any] | None) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        for entry in (earlier or {}).get("inputs") or []:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                self._entries[entry["file"]] = dict(entry)

    def set(self, file: str, status: str, reason: str | None = None) -> None:
        entry: dict[str, Any] = {"file": file, "status": status}
        if reason is not None:
            entry["reason"] = " ".join(reason.split())
        self._entries[file] = entry

    def entries(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._entries.values()]


def describe(
    out: Path,
    cfg: AnalyzeConfig,
    model: AnalysisModel,
    inputs: list[dict[str, Any]],
    earlier: dict[str, Any] | None,
    run: dict[str, Any],
) -> dict[str, Any]:
    """The provenance of a result: what ``<output>.meta.json`` holds.

    ``inputs`` are ``{"file", "status"}`` with status ``done``, ``skipped`` (with ``reason``)
    or ``pending`` (not reached: the run was interrupted); ``runs`` lists each run that wrote
    to the result, oldest first.
    """
    info, compute = model.info, model.compute_info()
    compute_dict = {"device": compute.device, "dtype": compute.dtype, "backend": compute.backend}
    runs = [r for r in (earlier or {}).get("runs") or [] if isinstance(r, dict)]
    runs.append(
        {**run, "streamser_version": __version__, "compute": compute_dict, "batch": cfg.batch}
    )
    return {
        "streamser_version": __version__,
        "output": str(out),
        "format": out.suffix.lstrip("."),
        "updated": timestamp(),
        "model": {
            "name": info.name,
            "kind": info.kind,
            "revision": info.revision,
            "sha256": info.sha256,
            "sha256_status": info.sha256_status,
            "demo": info.demo,
            **({"warning": DEMO_WARNING} if info.demo else {}),
        },
        "compute": compute_dict,
        "windows": asdict(cfg.windows),
        "batch": cfg.batch,
        "inputs": inputs,
        "runs": runs,
    }


def read_provenance(path: Path) -> dict[str, Any] | None:
    """An earlier run's ``<output>.meta.json``, or None (none, or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- the model


def recorded_model(files: list[Path]) -> tuple[str, str | None] | None:
    """``(model, revision)`` that the live runs of ``files`` used, when every one of them is a
    session whose meta.json names it; None when some input is not a session, or when no
    session says. ConfigError when they name different models, or some name none: the choice
    is then the user's."""
    from streamser.session.errors import SessionError
    from streamser.session.reader import is_session_dir, read_meta

    if not all(is_session_dir(f) for f in files):
        return None
    named: dict[tuple[str, str | None], list[str]] = {}
    unnamed: list[str] = []
    for f in files:
        try:
            meta = read_meta(f)
        except SessionError:
            continue  # reported and skipped when it is analysed
        model = meta.get("model")
        name, revision = (
            (model.get("name"), model.get("revision")) if isinstance(model, dict) else (None, None)
        )
        if not isinstance(name, str) or not name:
            unnamed.append(f.name)
            continue
        key = (name.removesuffix(INT8_SUFFIX), revision if isinstance(revision, str) else None)
        named.setdefault(key, []).append(f.name)
    if not named:
        return None
    if len(named) > 1 or unnamed:
        shown = [f"{model_label(*key)} ({', '.join(names)})" for key, names in named.items()]
        if unnamed:
            shown.append(f"not recorded ({', '.join(unnamed)})")
        raise ConfigError(
            "the sessions were analysed live with different models: "
            f"{'; '.join(shown)}; choose the model with --model"
        )
    return next(iter(named))


# ----------------------------------------------------------------------------- resuming


def check_same_model(out: Path, earlier: dict[str, Any] | None, model: AnalysisModel) -> None:
    """A resumed result holds one model's estimates: refuse another (after it loaded, so that
    its name and hash are known, before anything is written)."""
    before = earlier.get("model") if earlier else None
    if not isinstance(before, dict):
        return
    info = model.info
    now = {"name": info.name, "revision": info.revision, "sha256": info.sha256}
    differ = [
        k for k, v in now.items()
        if before.get(k) != v and not (k == "sha256" and (v is None or before.get(k) is None))
    ]  # fmt: skip
    if differ == ["sha256"]:
        raise ConfigError(
            f"-o {out} holds results of {info.name} with other weights (sha256 "
            f"{str(before['sha256'])[:12]}, now {str(info.sha256)[:12]}): use the same weights, "
            "or another -o"
        )
    if differ:
        old = model_label(str(before.get("name")), before.get("revision"))
        raise ConfigError(
            f"-o {out} holds results of model {old}, this run loaded "
            f"{model_label(info.name, info.revision)}: use the same --model, or another -o"
        )


def check_same_windows(out: Path, earlier: dict[str, Any] | None, cfg: AnalyzeConfig) -> None:
    before = earlier.get("windows") if earlier else None
    if not isinstance(before, dict):
        return
    now = asdict(cfg.windows)
    differ = [
        f"{k} {before[k]} there, {now[k]} now" for k in now if k in before and before[k] != now[k]
    ]
    if differ:
        raise ConfigError(
            f"-o {out} holds results made with other window settings ({', '.join(differ)}): "
            "use the same settings, or another -o"
        )


def model_label(name: str, revision: str | None) -> str:
    return name if revision is None else f"{name} (revision {revision[:12]})"
