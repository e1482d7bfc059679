"""Offline analysis of files and sessions into JSONL, CSV or Parquet, resumable.

One row per window (the live estimate schema, probabilities flattened to ``p0``..``p5`` in CSV
and Parquet) plus one summary row per file. Rows are appended to a JSONL progress file after
each file, and files whose summary row is already there (or in an earlier CSV or Parquet
result) are skipped on the next run. Unreadable files are reported and skipped (and retried
next time); when no input can be read at all (a single broken file, a name that does not
exist), the run is a one-line error, before the model is loaded. So is an output that cannot
be written (a missing or read-only directory, a directory in its place, an unknown suffix).

Each input is analysed once, however many times it is named (by its resolved path). A session
directory is taken whole, named or found under a directory; its windows that hold no recorded
audio (before recording started, while it was stopped or muted) are left out and counted
(``unrecorded_windows`` in its summary row), and those holding only some carry
``"partly_recorded": true``.

Every file written is private (0600, whatever the umask), like a session's. Next to the result,
``<output>.meta.json`` says what made it: the streamser version, the model and its weights'
hash, how it ran, the window settings, the batch, and each input's status; a Parquet result
also holds that JSON in its schema metadata (key ``streamser``). Resuming with another model or
other window settings is refused: one result holds one analysis.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from streamser.audio.windows import Window
from streamser.config import OUTPUT_FORMATS, AnalyzeConfig, ConfigError, ModelConfig
from streamser.constants import NUM_CLASSES
from streamser.contracts import AnalysisModel
from streamser.engine.executed_model import ExecutedModel
from streamser.engine.executor import Executor, ExecutorConfig
from streamser.engine.offline import analyze_audio
from streamser.errors import StreamserError
from streamser.labels import DEMO_WARNING
from streamser.session.logger import AUDIO_DIR_NAME, FILE_MODE
from streamser.version import __version__

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au"}
PROB_COLUMNS = [f"p{i}" for i in range(NUM_CLASSES)]
COLUMNS = [
    "type", "file", "seq", "window", "t_start_s", "t_end_s", *PROB_COLUMNS, "arousal", "valence",
    "arousal_smooth", "valence_smooth", "speech", "is_speech", "compute_s", "latency_s",
    "skipped_windows", "dropped_samples", "partly_recorded", "wall_time", "duration_s", "windows",
    "speech_windows", "unrecorded_windows", "mean_arousal", "mean_valence",
]  # fmt: skip
"""The CSV and Parquet columns: window rows and summary rows share them."""
PROVENANCE_SUFFIX = ".meta.json"
PARQUET_METADATA_KEY = "streamser"
"""The key of the provenance JSON in a Parquet result's schema metadata."""
INT8_SUFFIX = " (int8)"
"""What ``--quantize int8`` appends to the model's name (see ``model.runtime.load_model``)."""


@dataclass(frozen=True)
class AnalysisResult:
    """What a run of :func:`analyze_files` did."""

    output: Path
    analysed: int
    """Files analysed by this run (files done by an earlier run are not counted)."""
    windows: int
    failed: int
    """Unreadable files, skipped."""
    unrecorded_windows: int = 0
    """Windows of sessions left out because they hold no recorded audio."""
    provenance: Path | None = None
    """The ``<output>.meta.json`` written."""


def analyze_files(
    inputs: Iterable[str],
    cfg: AnalyzeConfig,
    load_model: Callable[[ModelConfig], AnalysisModel],
    say: Callable[[str], None],
    *,
    model_given: bool = True,
) -> AnalysisResult:
    """Analyse every audio file named or found under ``inputs`` into ``cfg.output``.

    ``load_model`` is called once, after the output was checked and every input was found and
    opened; one executor then owns the model and runs every file's windows in batches of
    ``cfg.batch``; ``say`` gets the progress messages (resuming, skips). ``model_given`` False
    (neither ``--model`` nor the config file named one): when every input is a session, the
    model their live runs used is loaded instead of ``cfg.model``'s (see
    :func:`recorded_model`).
    """
    out = Path(cfg.output)
    check_output(out)
    inputs = list(inputs)
    files = discover(inputs)
    if not files:
        raise ConfigError("no audio files found in " + " ".join(inputs))
    recorded = None if model_given else recorded_model(files)
    if recorded is not None:
        cfg = _with_recorded_model(cfg, recorded, len(files), say)
    prog = progress_path(out)
    meta_path = provenance_path(out)
    earlier = read_final(out) if out.suffix != ".jsonl" else []
    summaries = [r for r in earlier + read_rows(prog) if r.get("type") == "summary"]
    earlier_meta = read_provenance(meta_path) if summaries else None
    _check_same_windows(out, earlier_meta, cfg)
    done = _done_names(summaries)
    inputs_status = _InputsStatus(earlier_meta)
    todo: list[Path] = []
    for f in files:
        name = done.get(str(f)) or done.get(str(_resolved(f)))
        if name is None:
            todo.append(f)
            inputs_status.set(str(f), "pending")
        else:
            inputs_status.set(name, "done")
    if len(todo) < len(files):
        say(f"resuming: {len(files) - len(todo)} file(s) already done")
    failures: list[Exception] = []

    def skip(path: Path, e: Exception) -> None:
        failures.append(e)
        inputs_status.set(str(path), "skipped", reason=str(e))
        if len(files) > 1:  # a single input's failure is the run's one-line error instead
            say(f"skipped {path}: {e}")

    todo = [path for path in todo if _readable(path, skip)]
    if failures and len(failures) == len(files):
        _fail_without_output(failures)
    had_progress = prog.exists()
    started = _now()
    try:
        model = load_model(cfg.model)
    except StreamserError as e:
        if recorded is None:
            raise
        raise type(e)(
            f"{e} (the model of the sessions' live runs: choose another with --model)"
        ) from e
    _check_same_model(out, earlier_meta, model)
    executor = Executor(model, ExecutorConfig(max_batch=cfg.batch)).start()
    counts = _Counts()
    finished = False

    def provenance() -> dict[str, Any]:
        run = {"started": started, "finished": _now() if finished else None, **counts.as_dict()}
        return describe(out, cfg, model, inputs_status.entries(), earlier_meta, run)

    try:
        _analyze_all(
            ExecutedModel(executor, model), cfg, todo, prog, skip, say, inputs_status, counts
        )
        finished = True
    finally:
        executor.stop(drain=False)
        if not finished and _has_rows(prog):  # interrupted: say what the rows so far are
            with contextlib.suppress(OSError):
                write_private_json(meta_path, provenance())
    if len(failures) == len(files):  # a file broke mid-way, and it was the only one
        if prog.exists() and prog.stat().st_size == 0 and not had_progress:
            prog.unlink()
        _fail_without_output(failures)
    meta = provenance()
    if out.suffix != ".jsonl":
        write_final(out, earlier + read_rows(prog), meta)
    write_private_json(meta_path, meta)
    if out.suffix != ".jsonl":
        prog.unlink()
    return AnalysisResult(
        out, counts.analysed, counts.windows, len(failures), counts.unrecorded, meta_path
    )


@dataclass
class _Counts:
    analysed: int = 0
    windows: int = 0
    unrecorded: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "analysed": self.analysed,
            "windows": self.windows,
            "unrecorded_windows": self.unrecorded,
        }


def _analyze_all(
    model: AnalysisModel,
    cfg: AnalyzeConfig,
    todo: list[Path],
    prog: Path,
    skip: Callable[[Path, Exception], None],
    say: Callable[[str], None],
    inputs_status: _InputsStatus,
    counts: _Counts,
) -> None:
    """Analyse ``todo`` in order, appending each file's rows to ``prog`` once it is complete."""
    with open_private(prog, os.O_WRONLY | os.O_APPEND, "a") as sink:
        for path in todo:
            rows = _analyze_one(model, cfg, path, skip, say)
            if rows is None:
                continue
            sink.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            sink.flush()
            inputs_status.set(str(path), "done")
            counts.analysed += 1
            counts.windows += len(rows) - 1
            counts.unrecorded += int(rows[-1]["unrecorded_windows"])


def _analyze_one(
    model: AnalysisModel,
    cfg: AnalyzeConfig,
    path: Path,
    skip: Callable[[Path, Exception], None],
    say: Callable[[str], None],
) -> list[dict[str, Any]] | None:
    """The window rows and the summary row of one file; None (and ``skip``) when it fails."""
    from tqdm import tqdm

    from streamser.session.reader import is_session_dir, unclean_session_note
    from streamser.session.recording import PARTLY, UNRECORDED, open_native_audio, window_coverage

    try:
        audio = open_native_audio(path)
        note = unclean_session_note(path) if is_session_dir(path) else None
    except StreamserError as e:
        skip(path, e)
        return None
    if note is not None:
        say(note)
    unrecorded = 0

    def recorded(w: Window) -> bool:
        nonlocal unrecorded
        if window_coverage(audio, w.t_start_s, w.t_end_s) == UNRECORDED:
            unrecorded += 1
            return False
        return True

    rows: list[dict[str, Any]] = []
    with tqdm(
        total=audio.frames, desc=path.name[:30], unit="fr", unit_scale=True,
        file=sys.stderr, leave=False, disable=None,
    ) as bar:  # fmt: skip
        try:
            for est in analyze_audio(
                model, cfg.windows, audio, batch=cfg.batch, progress=bar.update,
                keep=recorded if audio.recorded is not None else None,
            ):  # fmt: skip
                row = {"type": "window", "file": str(path), **est.to_json_dict()}
                if window_coverage(audio, est.t_start_s, est.t_end_s) == PARTLY:
                    row["partly_recorded"] = True
                rows.append(row)
        except StreamserError as e:
            skip(path, e)
            return None
    partly = sum(1 for r in rows if r.get("partly_recorded"))
    if unrecorded or partly:
        say(
            f"{path}: {unrecorded} window(s) left out, holding no recorded audio (before "
            f"recording started, or while it was stopped or muted); {partly} only partly "
            "recorded (partly_recorded)"
        )
    rows.append(summary_row(str(path), rows, audio.frames / audio.sample_rate_hz, unrecorded))
    return rows


def discover(inputs: Iterable[str]) -> list[Path]:
    """Audio files named or found (recursively) under directories; session dirs are taken whole.

    Each file is listed once, at its first mention, however it is spelt (named twice, through a
    link, or named and also found under a directory): paths are compared resolved. A session
    directory found under a directory is taken whole when it holds a recording, never its
    segment files one by one. A named path that does not exist is a typing mistake: it fails
    here, before the model loads.
    """
    from streamser.audio.devices import SourceError
    from streamser.session.reader import is_session_dir

    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item).expanduser()
        if not p.exists():
            raise SourceError(f"audio file not found: {p}")
        for f in _walk(p) if p.is_dir() and not is_session_dir(p) else [p]:
            key = _resolved(f)
            if key not in seen:
                seen.add(key)
                found.append(f)
    return found


def _walk(directory: Path) -> Iterator[Path]:
    """Audio files and recorded sessions under ``directory``, in sorted path order; links to
    directories are not followed (they could loop)."""
    from streamser.session.reader import is_session_dir

    try:
        children = sorted(directory.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir():
            if is_session_dir(child):
                if _has_recording(child):
                    yield child
            elif not child.is_symlink():
                yield from _walk(child)
        elif child.is_file() and child.suffix.lower() in AUDIO_SUFFIXES:
            yield child


def _has_recording(session_dir: Path) -> bool:
    from streamser.session.recorder import SEGMENT_NAME_RE

    audio = session_dir / AUDIO_DIR_NAME
    try:
        return audio.is_dir() and any(SEGMENT_NAME_RE.match(p.name) for p in audio.iterdir())
    except OSError:
        return False


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: the spelling is all there is
        return path.absolute()


def _readable(path: Path, skip: Callable[[Path, Exception], None]) -> bool:
    """Whether ``path`` opens as audio (or a session with a recording); else ``skip`` it."""
    from streamser.session.recording import open_native_audio

    try:
        open_native_audio(path)
    except StreamserError as e:
        skip(path, e)
        return False
    return True


def _fail_without_output(failures: list[Exception]) -> NoReturn:
    """Every input failed: the run is an error (exit code 2), not an empty result."""
    if len(failures) == 1:
        raise failures[0]
    raise ConfigError(f"none of the {len(failures)} files could be read (see above); no output")


def _done_names(summaries: list[dict[str, Any]]) -> dict[str, str]:
    """The files earlier runs finished, by their name in the rows and by their resolved path
    (so another spelling of the same file is done too) -> their name in the rows."""
    done: dict[str, str] = {}
    for row in summaries:
        name = str(row["file"])
        done.setdefault(str(_resolved(Path(name))), name)
        done[name] = name
    return done


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
        shown = [f"{_model_label(*key)} ({', '.join(names)})" for key, names in named.items()]
        if unnamed:
            shown.append(f"not recorded ({', '.join(unnamed)})")
        raise ConfigError(
            "the sessions were analysed live with different models: "
            f"{'; '.join(shown)}; choose the model with --model"
        )
    return next(iter(named))


def _with_recorded_model(
    cfg: AnalyzeConfig,
    recorded: tuple[str, str | None],
    n_sessions: int,
    say: Callable[[str], None],
) -> AnalyzeConfig:
    name, revision = recorded
    revision = cfg.model.revision if cfg.model.revision is not None else revision
    what = "the session's" if n_sessions == 1 else "the sessions'"
    say(f"using {what} model, as recorded live: {_model_label(name, revision)} (--model overrides)")
    return replace(cfg, model=replace(cfg.model, model=name, revision=revision))


# ----------------------------------------------------------------------------- resuming


def _check_same_model(out: Path, earlier: dict[str, Any] | None, model: AnalysisModel) -> None:
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
        old = _model_label(str(before.get("name")), before.get("revision"))
        raise ConfigError(
            f"-o {out} holds results of model {old}, this run loaded "
            f"{_model_label(info.name, info.revision)}: use the same --model, or another -o"
        )


def _check_same_windows(out: Path, earlier: dict[str, Any] | None, cfg: AnalyzeConfig) -> None:
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


def _model_label(name: str, revision: str | None) -> str:
    return name if revision is None else f"{name} (revision {revision[:12]})"


# ----------------------------------------------------------------------------- the output


def check_output(out: Path) -> None:
    """Refuse an output that cannot be written, before the model is loaded: one line naming
    ``-o`` and what to do."""
    if out.suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"-o {out}: use a name ending in {', '.join(OUTPUT_FORMATS)}")
    if out.is_dir():
        raise ConfigError(
            f"-o {out} is a directory: name a file in it, e.g. -o {out / ('analysis' + out.suffix)}"
        )
    parent = out.parent
    if not parent.exists():
        raise ConfigError(
            f"-o {out}: the directory {parent} does not exist: create it, or choose another -o"
        )
    if not parent.is_dir():
        raise ConfigError(f"-o {out}: {parent} is not a directory: choose another -o")
    probe = parent / f".{out.name}.{secrets.token_hex(4)}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"-o {out}: cannot write in {parent} ({e.strerror or e}): "
            "choose a directory you can write to"
        ) from e
    for path in (out, progress_path(out), provenance_path(out)):
        if path.exists():
            _check_writable_file(out, path)
    if out.suffix == ".parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise ConfigError(
                f"-o {out}: writing .parquet needs pyarrow: pip install pyarrow "
                "(or use .jsonl / .csv)"
            )


def _check_writable_file(out: Path, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(
            f"-o {out}: {path} is in the way (not a file): move it, or choose another -o"
        )
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as e:
        raise ConfigError(
            f"-o {out}: cannot write to {path} ({e.strerror or e}): "
            "make it writable, or choose another -o"
        ) from e


def progress_path(out: Path) -> Path:
    """The JSONL file rows go to as each file is done: the result itself when it is JSONL."""
    return out if out.suffix == ".jsonl" else out.with_name(f".{out.name}.progress.jsonl")


def provenance_path(out: Path) -> Path:
    """``<output>.meta.json``: what made the result."""
    return out.with_name(out.name + PROVENANCE_SUFFIX)


@contextlib.contextmanager
def open_private(path: Path, flags: int, mode: str, **kw: Any) -> Iterator[Any]:
    """``open(path, mode)``, the file created 0600 whatever the umask (and made 0600 when an
    earlier version left it readable to others)."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    with contextlib.suppress(OSError):  # not ours to change: leave it as it is
        os.chmod(path, FILE_MODE)
    if "b" not in mode:
        kw.setdefault("encoding", "utf-8")
    with os.fdopen(fd, mode, **kw) as f:
        yield f


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically (a private temporary file, fsynced, renamed)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open_private(tmp, os.O_WRONLY | os.O_EXCL, "w") as f:
            f.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _has_rows(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


# ----------------------------------------------------------------------------- provenance


class _InputsStatus:
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
        "updated": _now(),
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


# ----------------------------------------------------------------------------- rows and files


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, tolerating a last line cut by a crash."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    with open(path, "rb") as f:
        for line in f:
            try:
                row = json.loads(line.decode("utf-8"))
            except ValueError:
                break
            if isinstance(row, dict):
                rows.append(row)
    return rows


def summary_row(
    file: str, estimates: list[dict[str, Any]], duration_s: float, unrecorded: int = 0
) -> dict[str, Any]:
    speech = [e for e in estimates if e["is_speech"] and e["arousal"] is not None]
    return {
        "type": "summary",
        "file": file,
        "duration_s": round(duration_s, 4),
        "windows": len(estimates),
        "speech_windows": len(speech),
        "unrecorded_windows": unrecorded,
        "mean_arousal": float(np.mean([e["arousal"] for e in speech])) if speech else None,
        "mean_valence": float(np.mean([e["valence"] for e in speech])) if speech else None,
    }


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    if "probs" not in row:  # already flat (read back from an earlier CSV or Parquet result)
        return row
    out = {k: v for k, v in row.items() if k != "probs"}
    probs = row.get("probs")
    for i, col in enumerate(PROB_COLUMNS):
        out[col] = probs[i] if probs else None
    if row.get("type") == "window":
        out["partly_recorded"] = bool(row.get("partly_recorded", False))
    return out


def write_final(out: Path, rows: list[dict[str, Any]], provenance: dict[str, Any]) -> None:
    """Write the CSV or Parquet result atomically and privately from all rows (Parquet: with
    the provenance in its schema metadata)."""
    flat = [flatten(r) for r in rows]
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)  # a crash's leftover, perhaps not private
    flags = os.O_WRONLY | os.O_EXCL
    if out.suffix == ".csv":
        with open_private(tmp, flags, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(flat)
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ConfigError(
                "writing .parquet needs pyarrow: pip install pyarrow (or use .jsonl / .csv)"
            ) from e
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in flat])
        table = table.replace_schema_metadata(
            {PARQUET_METADATA_KEY: json.dumps(provenance, ensure_ascii=False, default=str)}
        )
        with open_private(tmp, flags, "wb") as f:
            pq.write_table(table, f)
    os.replace(tmp, out)


def read_final(out: Path) -> list[dict[str, Any]]:
    """Rows of an earlier CSV or Parquet result (flat), so a resumed run keeps them; a file
    that does not read back is a one-line error (before the model loads), never overwritten."""
    if not out.exists():
        return []
    try:
        if out.suffix == ".csv":
            with open(out, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        import pyarrow.parquet as pq

        return pq.read_table(out).to_pylist()
    except (OSError, ValueError, csv.Error) as e:
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(
            f"-o {out} exists but does not read back as {out.suffix} ({reason}): "
            "move it away, or choose another -o"
        ) from e
