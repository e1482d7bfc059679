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
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from streamser.audio.windows import Window
from streamser.config import AnalyzeConfig, ConfigError, ModelConfig
from streamser.constants import ANALYZE_BATCH_CPU, ANALYZE_BATCH_GPU
from streamser.contracts import AnalysisModel, Estimate
from streamser.engine.executed_model import ExecutedModel
from streamser.engine.executor import Executor, ExecutorConfig
from streamser.engine.offline import analyze_audio
from streamser.errors import StreamserError
from streamser.session.archive_files import FileInfo, file_rows
from streamser.session.archive_pool import BATCHES_OUTSTANDING, PoolSettings, analyze_in_pool
from streamser.session.archive_progress import ArchiveProgress
from streamser.session.files import write_json_atomic
from streamser.session.inputs import discover, done_names, readable, resolved
from streamser.session.provenance import (
    InputsStatus,
    check_same_model,
    check_same_windows,
    describe,
    model_label,
    provenance_path,
    read_provenance,
    recorded_model,
    timestamp,
)
from streamser.session.results import (
    check_output,
    drop_incomplete,
    has_rows,
    open_private,
    progress_path,
    read_final,
    read_rows,
    write_final,
)


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
    check_same_windows(out, earlier_meta, cfg)
    done = done_names(summaries)
    inputs_status = InputsStatus(earlier_meta)
    todo: list[Path] = []
    for f in files:
        name = done.get(str(f)) or done.get(str(resolved(f)))
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

    durations = {path: readable(path, skip) for path in todo}
    todo = [path for path in todo if durations[path] is not None]
    if failures and len(failures) == len(files):
        _fail_without_output(failures)
    had_progress = prog.exists()
    started = timestamp()
    try:
        model = load_model(cfg.model)
    except StreamserError as e:
        if recorded is None:
            raise
        raise type(e)(
            f"{e} (the model of the sessions' live runs: choose another with --model)"
        ) from e
    check_same_model(out, earlier_meta, model)
    cfg = replace(cfg, batch=cfg.batch or default_batch(model.compute_info().device))
    batch = cfg.batch or 1
    max_pending = max(ExecutorConfig().max_pending, BATCHES_OUTSTANDING * batch)
    executor = Executor(model, ExecutorConfig(max_batch=batch, max_pending=max_pending)).start()
    counts = _Counts()
    finished = False

    def provenance() -> dict[str, Any]:
        run = {
            "started": started,
            "finished": timestamp() if finished else None,
            **counts.as_dict(),
        }
        return describe(out, cfg, model, inputs_status.entries(), earlier_meta, run)

    if has_rows(prog) and drop_incomplete(prog):
        say("the rows of a file left half-written by an earlier run were dropped: it is redone")
    total_s = sum(durations[path] or 0.0 for path in todo)
    try:
        with ArchiveProgress(total_s, len(todo)) as bar:
            _analyze_all(executor, cfg, todo, prog, skip, say, inputs_status, counts, bar)
        finished = True
    finally:
        executor.stop(drain=False)
        if not finished and has_rows(prog):  # interrupted: say what the rows so far are
            with contextlib.suppress(OSError):
                write_json_atomic(meta_path, provenance())
    if len(failures) == len(files):  # a file broke mid-way, and it was the only one
        if prog.exists() and prog.stat().st_size == 0 and not had_progress:
            prog.unlink()
        _fail_without_output(failures)
    meta = provenance()
    if out.suffix != ".jsonl":
        write_final(out, earlier + read_rows(prog), meta)
    write_json_atomic(meta_path, meta)
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


def default_batch(device: str) -> int:
    """Windows per model call when ``--batch`` is not given: many on a GPU, few on a CPU."""
    return ANALYZE_BATCH_GPU if device == "cuda" else ANALYZE_BATCH_CPU


def _analyze_all(
    executor: Executor,
    cfg: AnalyzeConfig,
    todo: list[Path],
    prog: Path,
    skip: Callable[[Path, Exception], None],
    say: Callable[[str], None],
    inputs_status: InputsStatus,
    counts: _Counts,
    bar: ArchiveProgress,
) -> None:
    """Analyse ``todo`` in order, appending each file's rows to ``prog`` once it is complete:
    in a pool of decoding processes (:mod:`archive_pool`), or with ``--workers 0`` here, one
    file after the other."""
    with open_private(prog, os.O_WRONLY | os.O_APPEND, "a") as sink:

        def done(info: FileInfo, estimates: list[list[Estimate]]) -> None:
            rows = file_rows(info, estimates, cfg.windows.hop_s)
            sink.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            sink.flush()
            inputs_status.set(info.path, "done")
            counts.analysed += 1
            counts.windows += sum(len(e) for e in estimates)
            counts.unrecorded += sum(info.left_out)
            partly = sum(sum(p) for p in info.partly)
            if sum(info.left_out) or partly:
                say(
                    f"{info.path}: {sum(info.left_out)} window(s) left out, holding no recorded "
                    "audio (before recording started, or while it was stopped or muted); "
                    f"{partly} only partly recorded (partly_recorded)"
                )
            bar.advance(info.duration_s)

        if cfg.workers == 0 or len(todo) == 1:  # one file gains nothing from decoding ahead
            model = ExecutedModel(executor, executor.model)
            for path in todo:
                result = _analyze_one(model, cfg, path, say, bar)
                if isinstance(result, Exception):
                    skip(path, result)
                else:
                    done(*result)
            return
        settings = PoolSettings.of(cfg, cfg.batch or 1)
        analyze_in_pool(executor, cfg, settings, todo, done, skip, say)


def _analyze_one(
    model: AnalysisModel,
    cfg: AnalyzeConfig,
    path: Path,
    say: Callable[[str], None],
    bar: ArchiveProgress,
) -> tuple[FileInfo, list[list[Estimate]]] | StreamserError:
    """Every stream's estimates of one file, in this process (the analyzer with its model, as
    ``listen --fast`` runs it); the error when it fails."""
    from streamser.session.reader import is_session_dir, unclean_session_note
    from streamser.session.recording import PARTLY, UNRECORDED, open_native_audio, window_coverage
    from streamser.session.streams import streams_to_analyse

    try:
        audio = open_native_audio(path)
        note = unclean_session_note(path) if is_session_dir(path) else None
        specs = streams_to_analyse(path, cfg.streams, audio.channels)
    except StreamserError as e:
        return e
    if note is not None:
        say(note)
    unrecorded = 0

    def recorded(w: Window) -> bool:
        nonlocal unrecorded
        if window_coverage(audio, w.t_start_s, w.t_end_s) == UNRECORDED:
            unrecorded += 1
            return False
        return True

    estimates: list[list[Estimate]] = []
    left_out: list[int] = []
    step_s = 1.0 / (audio.sample_rate_hz * len(specs))
    advanced_s = 0.0

    def progress(frames: int) -> None:
        nonlocal advanced_s
        advanced_s += frames * step_s
        bar.advance(frames * step_s)

    try:
        for spec in specs:
            unrecorded = 0
            estimates.append(
                list(
                    analyze_audio(
                        model, cfg.windows, audio, batch=cfg.batch or 1,
                        progress=progress,
                        keep=recorded if audio.recorded is not None else None, stream=spec,
                    )
                )
            )  # fmt: skip
            left_out.append(unrecorded)
    except StreamserError as e:
        bar.advance(-advanced_s)
        return e
    bar.advance(-advanced_s)  # the file is counted whole once its rows are written
    partly = tuple(
        tuple(window_coverage(audio, e.t_start_s, e.t_end_s) == PARTLY for e in stream)
        for stream in estimates
    )
    duration_s = audio.frames / audio.sample_rate_hz
    info = FileInfo(
        str(path), duration_s, tuple(s.name for s in specs), None, partly, tuple(left_out)
    )
    return info, estimates


def _fail_without_output(failures: list[Exception]) -> NoReturn:
    """Every input failed: the run is an error (exit code 2), not an empty result."""
    if len(failures) == 1:
        raise failures[0]
    raise ConfigError(f"none of the {len(failures)} files could be read (see above); no output")


def _with_recorded_model(
    cfg: AnalyzeConfig,
    recorded: tuple[str, str | None],
    n_sessions: int,
    say: Callable[[str], None],
) -> AnalyzeConfig:
    name, revision = recorded
    revision = cfg.model.revision if cfg.model.revision is not None else revision
    what = "the session's" if n_sessions == 1 else "the sessions'"
    say(f"using {what} model, as recorded live: {model_label(name, revision)} (--model overrides)")
    return replace(cfg, model=replace(cfg.model, model=name, revision=revision))
