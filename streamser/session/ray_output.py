"""Where a Ray analysis writes: Parquet parts, a manifest of finished files, the final tables.

Layout, for ``-o DIR`` (a directory of Parquet files)::

    DIR/windows/part-00000.parquet ...   one row per window (file, stream, times, probabilities,
                                         arousal, valence, speech, ...)
    DIR/summary/part-00000.parquet ...   one row per file and stream (session/summary.py)
    DIR/manifest.jsonl                   one line per part written: the files it finished
                                         (and the files that failed, with why)
    DIR/meta.json                        the provenance (session/provenance.py)

For ``-o OUT.parquet`` the same parts live in ``.OUT.parquet.parts/`` beside it, and each run
ends by writing ``OUT.parquet`` (every window) and ``OUT.summary.parquet`` from them, each
atomically, with the provenance beside them (``OUT.parquet.meta.json``) and in their schema
metadata.

Resuming is by the manifest: a part is written (to a temporary name, then renamed) before its
line is appended, so a run killed at any moment leaves whole parts; parts that no manifest line
names (killed between the rename and the line) are deleted when the next run opens the output,
so no file's rows are ever counted twice. A manifest's cut last line is ignored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamser.config import ConfigError
from streamser.session.files import write_json_atomic
from streamser.session.results import (
    PARQUET_METADATA_KEY,
    PROB_COLUMNS,
    flatten,
    open_private,
    read_rows,
)
from streamser.session.summary import SUMMARY_COLUMNS

WINDOW_COLUMNS = [
    "file", "stream", "seq", "window", "t_start_s", "t_end_s", *PROB_COLUMNS, "arousal",
    "valence", "arousal_smooth", "valence_smooth", "speech", "is_speech", "partly_recorded",
    "dropped_samples",
]  # fmt: skip
"""The window table's columns."""
PART_RE = re.compile(r"^part-(\d{5,})\.parquet$")
_TEXT = {"file", "stream"}
_WHOLE = {"seq", "window", "dropped_samples", "windows", "speech_windows", "unrecorded_windows"}
_FLAGS = {"is_speech", "partly_recorded"}


def _schema(columns: list[str]) -> Any:
    """The table's types, fixed, so that every part (some without speech, say) concatenates."""
    import pyarrow as pa

    def kind(c: str) -> Any:
        if c in _TEXT:
            return pa.string()
        if c in _WHOLE:
            return pa.int64()
        return pa.bool_() if c in _FLAGS else pa.float64()

    return pa.schema([(c, kind(c)) for c in columns])


@dataclass
class RayOutput:
    """An output opened for a run: what earlier runs finished, and where the next part goes."""

    out: Path
    work: Path
    """The directory that holds the parts and the manifest."""
    meta_path: Path
    done: dict[str, str] = field(default_factory=dict)
    """Files finished by earlier runs, by name -> the part holding their rows."""
    failed: dict[str, str] = field(default_factory=dict)
    """Files that could not be read, by name -> why (not retried)."""
    next_part: int = 0

    @property
    def single_file(self) -> bool:
        return self.out.suffix == ".parquet"

    @property
    def manifest(self) -> Path:
        return self.work / "manifest.jsonl"

    @property
    def summary_path(self) -> Path:
        """The summary table of a single-file output."""
        return self.out.with_name(self.out.stem + ".summary.parquet")

    @classmethod
    def open(cls, out: Path) -> RayOutput:
        """Check that ``out`` can be written, read its manifest, delete orphan parts."""
        if out.suffix not in ("", ".parquet") and not out.is_dir():
            raise ConfigError(f"-o {out}: --ray writes Parquet: a .parquet file or a directory")
        if out.suffix == ".parquet":
            if out.is_dir():
                raise ConfigError(f"-o {out} is a directory: name a file, or drop .parquet")
            work, meta = out.with_name(f".{out.name}.parts"), out.with_name(out.name + ".meta.json")
        else:
            if out.exists() and not out.is_dir():
                raise ConfigError(f"-o {out} is a file: name a directory, or OUT.parquet")
            work, meta = out, out / "meta.json"
        if not out.parent.is_dir():
            raise ConfigError(
                f"-o {out}: the directory {out.parent} does not exist: create it, or choose "
                "another -o"
            )
        try:
            for d in (work, work / "windows", work / "summary"):
                d.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"-o {out}: cannot write there ({e.strerror or e}): choose another -o"
            ) from e
        output = cls(out, work, meta)
        output._read_manifest()
        return output

    def _read_manifest(self) -> None:
        named: set[str] = set()
        for entry in read_rows(self.manifest):
            part = entry.get("part")
            if isinstance(part, str):
                named.add(part)
                for f in entry.get("files") or []:
                    self.done[str(f)] = part
            for f in entry.get("failed") or []:
                if isinstance(f, dict) and "file" in f:
                    self.failed[str(f["file"])] = str(f.get("reason", ""))
        numbers = [-1]
        for table in ("windows", "summary"):
            for p in (self.work / table).iterdir():
                m = PART_RE.match(p.name)
                if m is None:
                    if p.name.endswith(".tmp"):
                        p.unlink(missing_ok=True)  # a part a killed run was writing
                    continue
                numbers.append(int(m.group(1)))
                if p.stem not in named:
                    p.unlink(missing_ok=True)  # written, but its manifest line never was
        self.next_part = max(numbers) + 1

    def write_part(
        self,
        windows: list[dict[str, Any]],
        summaries: list[dict[str, Any]],
        files: list[str],
        failed: Iterable[tuple[str, str]] = (),
    ) -> str:
        """Write one part (the rows of ``files``), then its manifest line; returns its name."""
        name = f"part-{self.next_part:05d}"
        self.next_part += 1
        if files:
            _write_table(self.work / "windows" / f"{name}.parquet", windows, WINDOW_COLUMNS)
            _write_table(self.work / "summary" / f"{name}.parquet", summaries, SUMMARY_COLUMNS)
        failures = [{"file": f, "reason": r} for f, r in failed]
        line = {"part": name if files else None, "files": files, "failed": failures}
        with open_private(self.manifest, os.O_WRONLY | os.O_APPEND, "a") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for file in files:
            self.done[file] = name
        for file, reason in failed:
            self.failed[file] = reason
        return name

    def tables(self) -> tuple[Any, Any]:
        """Every part's windows and summaries, as two pyarrow tables."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out: list[Any] = []
        for table, columns in (("windows", WINDOW_COLUMNS), ("summary", SUMMARY_COLUMNS)):
            parts = sorted((self.work / table).glob("part-*.parquet"))
            read = [pq.read_table(p) for p in parts]
            out.append(pa.concat_tables(read) if read else _empty(columns))
        return out[0], out[1]

    def finish(self, provenance: dict[str, Any]) -> None:
        """Write the provenance; for a single-file output also the two tables, atomically."""
        write_json_atomic(self.meta_path, provenance)
        if not self.single_file:
            return
        import pyarrow.parquet as pq

        windows, summary = self.tables()
        meta = {PARQUET_METADATA_KEY: json.dumps(provenance, ensure_ascii=False, default=str)}
        for table, path in ((windows, self.out), (summary, self.summary_path)):
            tmp = path.with_name(path.name + ".partial")
            tmp.unlink(missing_ok=True)
            with open_private(tmp, os.O_WRONLY | os.O_EXCL, "wb") as f:
                pq.write_table(table.replace_schema_metadata(meta), f)
            os.replace(tmp, path)


def window_record(row: dict[str, Any]) -> dict[str, Any]:
    """A window row (``file_rows``) as the window table holds it."""
    flat = flatten(row)
    return {c: flat.get(c) for c in WINDOW_COLUMNS}


def summary_record(row: dict[str, Any]) -> dict[str, Any]:
    return {c: row.get(c) for c in SUMMARY_COLUMNS}


def _write_table(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=_schema(columns))
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open_private(tmp, os.O_WRONLY | os.O_EXCL, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _empty(columns: list[str]) -> Any:
    return _schema(columns).empty_table()
