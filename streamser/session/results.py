"""The rows of an offline analysis and their files: the JSONL progress file, the CSV or
Parquet result (written atomically), all of them private (0600)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamser.config import OUTPUT_FORMATS, ConfigError
from streamser.constants import DEFAULT_STREAM_NAME, NUM_CLASSES
from streamser.session.files import FILE_MODE
from streamser.session.provenance import provenance_path
from streamser.session.summary import SHARE_COLUMNS, summarize

PROB_COLUMNS = [f"p{i}" for i in range(NUM_CLASSES)]
COLUMNS = [
    "type", "file", "stream", "seq", "window", "t_start_s", "t_end_s", *PROB_COLUMNS, "arousal",
    "valence", "arousal_smooth", "valence_smooth", "speech", "is_speech", "compute_s",
    "latency_s", "skipped_windows", "dropped_samples", "partly_recorded", "wall_time",
    "duration_s", "windows", "speech_windows", "unrecorded_windows", "mean_arousal",
    "mean_valence", "speech_s", "sd_arousal", "sd_valence", *SHARE_COLUMNS,
]  # fmt: skip
"""The CSV and Parquet columns: window rows and summary rows share them."""
PARQUET_METADATA_KEY = "streamser"
"""The key of the provenance JSON in a Parquet result's schema metadata."""


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


def has_rows(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


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


def drop_incomplete(path: Path) -> int:
    """Cut from a JSONL progress file the rows of files without their summary rows (a run
    killed while it wrote them) and a last line cut by a crash, so that the file, analysed
    again, is not listed twice; the file is replaced atomically, and only when something is
    cut. Returns the rows dropped."""
    rows = read_rows(path)
    done = {r.get("file") for r in rows if r.get("type") == "summary"}
    kept = [r for r in rows if r.get("file") in done]
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept)
    if len(kept) == len(rows) and path.exists() and path.stat().st_size == len(data.encode()):
        return 0
    tmp = path.with_name(path.name + ".partial")
    tmp.unlink(missing_ok=True)
    with open_private(tmp, os.O_WRONLY | os.O_EXCL, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(rows) - len(kept)


def summary_row(
    file: str,
    estimates: list[dict[str, Any]],
    duration_s: float,
    hop_s: float,
    *,
    stream: str = DEFAULT_STREAM_NAME,
    unrecorded: int = 0,
) -> dict[str, Any]:
    """One file's stream summarised (see :mod:`streamser.session.summary`)."""
    return {
        "type": "summary",
        **summarize(file, estimates, duration_s, hop_s, stream=stream, unrecorded=unrecorded),
    }


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """A row as CSV and Parquet hold it; rows written before streams existed are ``main``'s."""
    if "probs" not in row:  # already flat (read back from an earlier CSV or Parquet result)
        return row if row.get("stream") else {**row, "stream": DEFAULT_STREAM_NAME}
    out = {k: v for k, v in row.items() if k != "probs"}
    out.setdefault("stream", DEFAULT_STREAM_NAME)
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
