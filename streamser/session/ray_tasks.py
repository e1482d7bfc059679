"""What runs on the Ray cluster: the CPU tasks that prepare files and the model actors.

Both are plain functions and classes of this package, so every node needs streamser installed
(as it needs the model: an actor loads it by its hub id or path, which each node resolves from
its own cache; the weights never travel inside a task).

A prepare task reads one file (``archive_files.prepare_file``) and yields its windows in
batches of rows, each with its model input (192 kB), then one ``file`` row that describes the
file (its duration, its streams and how many windows each has, or why it failed). A model
actor runs the inputs of the rows that need the model and passes every row on with its logits
and without its input; on ``file`` rows it also says which model ran, so the driver can record
and check it. The smoothing, which needs each stream's windows in order, is the driver's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from streamser.config import ModelConfig, StreamConfig, WindowConfig
from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.contracts import AnalysisModel
from streamser.session.archive_files import FileFailure, prepare_file

ROWS_PER_BATCH = 32
"""Window rows per batch a prepare task yields: 6 MB of model inputs."""
WINDOW, FILE = "window", "file"


def prepare_batches(
    batch: dict[str, np.ndarray], windows: WindowConfig, streams: StreamConfig
) -> Iterator[dict[str, np.ndarray]]:
    """The rows of the files in ``batch["path"]`` (see the module doc)."""
    for path in batch["path"]:
        yield from _file_batches(str(path), windows, streams)


def _file_batches(
    path: str, windows: WindowConfig, streams: StreamConfig
) -> Iterator[dict[str, np.ndarray]]:
    prepared = prepare_file(path, windows, streams)
    if isinstance(prepared, FileFailure):
        yield _rows([], path, {"error": prepared.reason})
        return
    info = prepared.info
    rows: list[tuple[Any, ...]] = []
    for k, s in enumerate(prepared.streams):
        for i in range(s.windows):
            run = bool(s.run[i])
            model_input = s.inputs(i, i + 1)[0] if run else None
            rows.append(
                (k, i, int(s.index[i]), int(s.start_sample[i]), int(s.end_sample[i]),
                 float(s.speech[i]), bool(s.is_speech[i]), run, int(s.dropped_samples[i]),
                 info.partly[k][i], model_input)
            )  # fmt: skip
            if len(rows) == ROWS_PER_BATCH:
                yield _rows(rows, path, None)
                rows = []
    if rows:
        yield _rows(rows, path, None)
    description = {
        "duration_s": info.duration_s,
        "streams": list(info.stream_names),
        "windows": [s.windows for s in prepared.streams],
        "left_out": list(info.left_out),
        "note": info.note,
    }
    yield _rows([], path, description)


def _rows(
    windows: list[tuple[Any, ...]], path: str, file: dict[str, Any] | None
) -> dict[str, np.ndarray]:
    """One batch: ``windows`` as rows, or a single ``file`` row describing the file."""
    n = len(windows) if file is None else 1
    cols = list(zip(*windows)) if windows else [[0]] * 10 + [[None]]
    inputs = np.zeros((n, WINDOW_SAMPLES), dtype=np.float32)
    if file is None:
        for j, x in enumerate(cols[10]):
            if x is not None:
                inputs[j] = x
    return {
        "kind": np.array([WINDOW if file is None else FILE] * n, dtype=object),
        "path": np.array([path] * n, dtype=object),
        "stream_k": np.array(cols[0], dtype=np.int64),
        "seq": np.array(cols[1], dtype=np.int64),
        "window": np.array(cols[2], dtype=np.int64),
        "start_sample": np.array(cols[3], dtype=np.int64),
        "end_sample": np.array(cols[4], dtype=np.int64),
        "speech": np.array(cols[5], dtype=np.float64),
        "is_speech": np.array(cols[6], dtype=bool),
        "run": np.array(cols[7], dtype=bool) & (file is None),
        "dropped_samples": np.array(cols[8], dtype=np.int64),
        "partly": np.array(cols[9], dtype=bool),
        "info": np.array([json.dumps(file) if file is not None else ""] * n, dtype=object),
        "input": inputs,
    }


class ModelActor:
    """One model load; runs the rows that need the model (see the module doc)."""

    def __init__(
        self, load: Callable[[ModelConfig], AnalysisModel], model: ModelConfig, threads: int
    ) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.model = load(model)
        info, compute = self.model.info, self.model.compute_info()
        self.description = json.dumps(
            {"info": info.to_dict(), "compute": compute.__dict__}, default=str
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        run = np.asarray(batch["run"], dtype=bool)
        n = len(run)
        logits = np.zeros((n, NUM_CLASSES), dtype=np.float32)
        compute_s = 0.0
        if run.any():
            t0 = time.perf_counter()
            logits[run] = self.model.logits(np.ascontiguousarray(batch["input"][run]))
            compute_s = (time.perf_counter() - t0) / int(run.sum())
        out = {k: v for k, v in batch.items() if k != "input"}
        out["logits"] = logits
        out["compute_s"] = np.full(n, compute_s)
        out["model"] = np.array(
            [self.description if k == FILE else "" for k in batch["kind"]], dtype=object
        )
        return out
