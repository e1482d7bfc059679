"""``streamser analyze FILE_OR_DIR... -o OUT``: the model over audio files as fast as possible.

One row per window (the live estimate schema, probabilities flattened to ``p0``..``p5`` in CSV and
Parquet) plus one summary row per file. Resumable: rows are appended to a JSONL progress file
after each file, and files whose summary row is already there are skipped on the next run.
Unreadable files are reported on stderr and skipped (and retried next time); when no input
can be read at all (a single broken file, a name that does not exist), the run is a one-line
error with exit code 2, before the model is loaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from streamser.config import ConfigError, WindowConfig

log = logging.getLogger("streamser")

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au"}
FORMATS = (".jsonl", ".csv", ".parquet")
PROB_COLUMNS = [f"p{i}" for i in range(6)]


def discover(inputs: Iterable[str]) -> list[Path]:
    """Audio files named or found (recursively) under directories; session dirs are taken whole.

    A named path that does not exist is a typing mistake: it fails here, before the model loads.
    """
    from streamser.audio.devices import SourceError
    from streamser.session.reader import is_session_dir

    found: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if not p.exists():
            raise SourceError(f"audio file not found: {p}")
        if p.is_dir() and not is_session_dir(p):
            found += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
        else:
            found.append(p)
    return found


def progress_path(out: Path) -> Path:
    return out if out.suffix == ".jsonl" else out.with_name(f".{out.name}.progress.jsonl")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, tolerating a last line cut by a crash."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def summary_row(file: str, estimates: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    speech = [e for e in estimates if e["is_speech"] and e["arousal"] is not None]
    return {
        "type": "summary",
        "file": file,
        "duration_s": round(duration_s, 4),
        "windows": len(estimates),
        "speech_windows": len(speech),
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
    return out


COLUMNS = [
    "type", "file", "seq", "window", "t_start_s", "t_end_s", *PROB_COLUMNS, "arousal", "valence",
    "arousal_smooth", "valence_smooth", "speech", "is_speech", "compute_s", "latency_s",
    "skipped_windows", "dropped_samples", "wall_time", "duration_s", "windows", "speech_windows",
    "mean_arousal", "mean_valence",
]  # fmt: skip


def write_final(out: Path, rows: list[dict[str, Any]]) -> None:
    """Write the CSV or Parquet result atomically from all rows."""
    flat = [flatten(r) for r in rows]
    tmp = out.with_name(out.name + ".partial")
    if out.suffix == ".csv":
        with open(tmp, "w", newline="", encoding="utf-8") as f:
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
        pq.write_table(table, tmp)
    os.replace(tmp, out)


def analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from streamser.commands.listen import load_for
    from streamser.config import ModelConfig
    from streamser.engine.offline import analyze_audio
    from streamser.errors import StreamserError
    from streamser.session.recording import open_native_audio

    out = Path(args.output)
    if out.suffix not in FORMATS:
        raise ConfigError(f"-o {out}: use a name ending in {', '.join(FORMATS)}")
    windows = WindowConfig(
        hop_s=args.hop if args.hop is not None else 1.0,
        first_s=3.0 if args.full_windows_only else 1.0,
        vad=not args.no_vad,
        vad_threshold=args.vad_threshold if args.vad_threshold is not None else 0.5,
        skip_non_speech=args.skip_non_speech,
    )
    files = discover(args.inputs)
    if not files:
        raise ConfigError("no audio files found in " + " ".join(args.inputs))
    prog = progress_path(out)
    earlier = read_final(out) if out.suffix != ".jsonl" else []
    done = {r["file"] for r in earlier + read_rows(prog) if r.get("type") == "summary"}
    todo = [f for f in files if str(f) not in done]
    if len(todo) < len(files):
        print(
            f"streamser: resuming: {len(files) - len(todo)} file(s) already done", file=sys.stderr
        )
    failures: list[Exception] = []

    def skip(path: Path, e: Exception) -> None:
        failures.append(e)
        if len(files) > 1:  # a single input's failure is the run's one-line error instead
            print(f"streamser: skipped {path}: {e}", file=sys.stderr)

    todo = [path for path in todo if _readable(path, skip)]
    if failures and len(failures) == len(files):
        _fail_without_output(failures)
    model = load_for(
        ModelConfig(
            model=args.model or "amiriparian/ExHuBERT",
            revision=args.revision,
            compute=args.compute,
            verify=args.verify,
            quantize=args.quantize,
            backend=args.backend or "torch",
        )
    )
    analysed = total_windows = 0
    prog_existed = prog.exists()
    with open(prog, "a", encoding="utf-8") as sink:
        for path in todo:
            try:
                audio = open_native_audio(path)
            except StreamserError as e:
                skip(path, e)
                continue
            rows: list[dict[str, Any]] = []
            with tqdm(
                total=audio.frames, desc=path.name[:30], unit="fr", unit_scale=True,
                file=sys.stderr, leave=False, disable=None,
            ) as bar:  # fmt: skip
                try:
                    for est in analyze_audio(
                        model, windows, audio, batch=args.batch, progress=bar.update
                    ):
                        rows.append({"type": "window", "file": str(path), **est.to_json_dict()})
                except StreamserError as e:
                    skip(path, e)
                    continue
            rows.append(summary_row(str(path), rows, audio.frames / audio.sample_rate_hz))
            sink.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            sink.flush()
            analysed += 1
            total_windows += len(rows) - 1
    failed = len(failures)
    if failed == len(files):  # a file broke mid-way, and it was the only one
        if not prog_existed and prog.stat().st_size == 0:
            prog.unlink()
        _fail_without_output(failures)
    if out.suffix != ".jsonl":
        write_final(out, earlier + read_rows(prog))
        prog.unlink()
    print(
        f"streamser: analysed {analysed} file(s), {total_windows} windows -> {out}"
        + (f"; {failed} unreadable file(s) skipped" if failed else ""),
        file=sys.stderr,
    )
    return 0


def _readable(path: Path, skip: Callable[[Path, Exception], None]) -> bool:
    """Whether ``path`` opens as audio (or a session with a recording); else ``skip`` it."""
    from streamser.errors import StreamserError
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


def read_final(out: Path) -> list[dict[str, Any]]:
    """Rows of an earlier CSV or Parquet result (flat), so a resumed run keeps them."""
    if not out.exists():
        return []
    if out.suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    import pyarrow.parquet as pq

    return pq.read_table(out).to_pylist()
