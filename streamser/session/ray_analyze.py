"""``streamser analyze DIR --ray [ADDRESS] -o OUT``: an archive analysed on a Ray cluster.

Ray Data reads the list of files still to do, prepares each file's windows in CPU tasks
(decoding, resampling, speech detection: ``ray_tasks.prepare_batches``) and runs the model in
a pool of ``--actors`` actors (``ray_tasks.ModelActor``: one model load each; one GPU each
where the cluster has GPUs, else CPUs, with the batch ``--batch`` or one sized for the
device). This process, the driver, gathers each file's rows as they stream back, smooths each
stream in order, and writes Parquet parts and a manifest of finished files as files complete
(``ray_output``): a run killed at any point resumes where its manifest ends, and a file that
could not be read is reported, recorded, and not tried again.

Without an address, a Ray is started on this machine for the run, reachable on the loopback
interface only (Ray's own switch for that: every node address becomes 127.0.0.1, which is
checked before anything runs) and without its dashboard; ``auto`` or an address joins a
running cluster (``ray start --head``), which is left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamser.config import AnalyzeConfig, ConfigError, ModelConfig
from streamser.constants import DEFAULT_STREAM_NAME
from streamser.contracts import AnalysisModel, ComputeInfo, Estimate, ModelInfo, StreamSpec
from streamser.engine.offline import PreparedStream, build_estimates
from streamser.errors import StreamserError
from streamser.session.analysis import AnalysisResult
from streamser.session.archive_files import FileInfo, file_rows
from streamser.session.archive_progress import ArchiveProgress
from streamser.session.inputs import discover, readable, resolved
from streamser.session.provenance import (
    InputsStatus,
    check_same_model,
    check_same_windows,
    describe,
    read_provenance,
    timestamp,
)
from streamser.session.ray_output import RayOutput, summary_record, window_record
from streamser.session.ray_tasks import FILE, ModelActor, prepare_batches

LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch that makes a node take the loopback address as its own ("0": every server a
Ray started here binds 127.0.0.1). Read when ray is imported, so it is set before."""
PREPARE_MEMORY_BYTES = 512 * 2**20
"""Memory a prepare task asks the scheduler for: its worker (torch, the speech detector) holds
about 250 MB, an hour of a stream's 16 kHz audio 230 MB more."""
FLUSH_S = 30.0
"""Longest wait before finished files' rows are written as a part (and their manifest line)."""
FLUSHES_PER_RUN = 10
"""A part is also written every ``files / FLUSHES_PER_RUN`` finished files."""


class RayError(StreamserError):
    """Ray is missing, cannot be reached, or the run failed on the cluster."""


def analyze_on_ray(
    inputs: Iterable[str],
    cfg: AnalyzeConfig,
    load_model: Callable[[ModelConfig], AnalysisModel],
    say: Callable[[str], None],
) -> AnalysisResult:
    """Analyse every file named or found under ``inputs`` on Ray into ``cfg.output``."""
    out = Path(cfg.output)
    _need_ray_and_pyarrow()
    output = RayOutput.open(out)
    inputs = list(inputs)
    files = discover(inputs)
    if not files:
        raise ConfigError("no audio files found in " + " ".join(inputs))
    earlier = read_provenance(output.meta_path) if output.done or output.failed else None
    check_same_windows(out, earlier, cfg)
    status = InputsStatus(earlier)
    todo = _todo(files, output, status, say)
    skipped: list[tuple[str, str]] = []
    durations = {p: readable(p, lambda p, e: skipped.append((str(p), str(e)))) for p in todo}
    todo = [p for p in todo if durations[p] is not None]
    for name, reason in skipped:
        if len(files) > 1:
            say(f"skipped {name}: {reason}")
        status.set(name, "skipped", reason)
    if skipped:
        output.write_part([], [], [], skipped)
    if not todo:
        if not output.done:
            raise ConfigError(
                f"none of the {len(files)} files could be read (see above); no output"
            )
        say(f"nothing to do: every file is done ({len(output.done)} in {output.manifest})")
        if earlier is not None:
            output.finish(earlier)
        return AnalysisResult(out, 0, 0, len(skipped), 0, output.meta_path)
    started = timestamp()
    with _ray_session(cfg) as cluster:
        run = _Run(cfg, load_model, cluster, output, status, say, earlier)
        with ArchiveProgress(sum(durations[p] or 0.0 for p in todo), len(todo)) as bar:
            run.bar = bar
            run.execute(todo)
    failed = len(skipped) + run.failed
    provenance = run.provenance(started, finished=True)
    output.finish(provenance)
    return AnalysisResult(out, run.analysed, run.windows, failed, run.unrecorded, output.meta_path)


def _todo(
    files: list[Path], output: RayOutput, status: InputsStatus, say: Callable[[str], None]
) -> list[Path]:
    """The files no earlier run finished or gave up on; those done are marked so."""
    done = {str(resolved(Path(f))): f for f in output.done}
    gave_up = {str(resolved(Path(f))): f for f in output.failed}
    todo: list[Path] = []
    before = 0
    for f in files:
        key = str(resolved(f))
        if str(f) in output.done or key in done:
            status.set(done.get(key, str(f)), "done")
            before += 1
        elif str(f) in output.failed or key in gave_up:
            name = gave_up.get(key, str(f))
            status.set(name, "skipped", output.failed[name])
            before += 1
        else:
            todo.append(f)
            status.set(str(f), "pending")
    if before:
        failed = sum(1 for f in files if str(resolved(f)) in gave_up or str(f) in output.failed)
        note = f" ({failed} could not be read: delete their lines in {output.manifest} to retry)"
        say(f"resuming: {before} file(s) already done{note if failed else ''}")
    return todo


def _need_ray_and_pyarrow() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise RayError("--ray needs Ray Data: pip install 'streamser[ray]'")


# ----------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Cluster:
    address: str
    started_here: bool
    gpus: float
    cpus: float


@contextlib.contextmanager
def _ray_session(cfg: AnalyzeConfig) -> Iterator[Cluster]:
    """Connected to Ray for the run: a loopback-only Ray started here, or the cluster named."""
    address = None if cfg.ray in (None, "local") else cfg.ray
    if address is None or _is_loopback(address):
        os.environ[LOOPBACK_ONLY_ENV] = "0"
    import ray

    actors = cfg.actors or 1
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        kwargs["configure_logging"] = False
        try:
            if address is None:
                cores = os.cpu_count() or 1
                ray.init(num_cpus=max(cores, actors + 1), **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except Exception as e:
            where = "start a Ray on this machine" if address is None else f"reach Ray at {address}"
            raise RayError(f"could not {where}: {_one_line(e)}") from e
        started = True
    try:
        node = ray.get_runtime_context().gcs_address
        if address is None and started and not node.startswith(("127.", "[::1]", "localhost")):
            raise RayError(
                f"the Ray started here listens on {node}, not on the loopback interface only: "
                "run it in a fresh process, or start one with 'ray start --head' and use --ray auto"
            )
        resources = ray.cluster_resources()
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts hours
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        yield Cluster(node, started, resources.get("GPU", 0.0), resources.get("CPU", 0.0))
    finally:
        if started:
            ray.shutdown()


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


# ----------------------------------------------------------------------------- one run


@dataclass
class _Pending:
    """One file's rows as they arrive (the actors finish batches in any order)."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    description: dict[str, Any] | None = None


class _RemoteModel:
    """The actors' model, as described by them: what the provenance and its checks read."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.info = ModelInfo(**description["info"])
        self._compute = ComputeInfo(**description["compute"])

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        raise RayError("the model runs in the actors")

    def compute_info(self) -> ComputeInfo:
        return self._compute


class _Run:
    def __init__(
        self,
        cfg: AnalyzeConfig,
        load: Callable[[ModelConfig], AnalysisModel],
        cluster: Cluster,
        output: RayOutput,
        status: InputsStatus,
        say: Callable[[str], None],
        earlier: dict[str, Any] | None,
    ) -> None:
        self.cfg, self.load, self.cluster = cfg, load, cluster
        self.output, self.status, self.say = output, status, say
        self.earlier = earlier
        self.model: _RemoteModel | None = None
        self.pending: dict[str, _Pending] = {}
        self.analysed = self.windows = self.failed = self.unrecorded = 0
        self.bar: ArchiveProgress | None = None
        self._rows: list[dict[str, Any]] = []
        self._summaries: list[dict[str, Any]] = []
        self._files: list[str] = []
        self._failures: list[tuple[str, str]] = []
        self._flushed_at = time.monotonic()
        self._flush_every = 1

    # -- the dataset ----------------------------------------------------------------------

    def execute(self, todo: list[Path]) -> None:
        import ray

        cfg, cluster = self.cfg, self.cluster
        actors = cfg.actors or 1
        gpu = cluster.gpus >= 1
        batch = cfg.batch or (64 if gpu else 8)
        self.cfg = replace(cfg, batch=batch)
        self._flush_every = max(1, len(todo) // FLUSHES_PER_RUN)
        threads = 0 if gpu else max(1, int(cluster.cpus - 1) // actors)
        items = [{"path": str(p)} for p in todo]
        ds: Any = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000))
        ds = ds.map_batches(
            prepare_batches,
            batch_size=1,
            fn_kwargs={"windows": cfg.windows, "streams": cfg.streams},
            num_cpus=1,
            # What a task holds: a decoded file and its windows on their way out. Declared,
            # it also keeps Ray Data from fusing the decoding into the model actors.
            memory=PREPARE_MEMORY_BYTES,
        )
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_kwargs={"load": self.load, "model": cfg.model, "threads": threads},
            batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpu else None,
            num_cpus=None if gpu else threads,
        )
        try:
            for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
                self._take(block)
        except StreamserError:
            raise
        except Exception as e:
            cause = _streamser_cause(e)
            if cause is not None:
                raise RayError(str(cause)) from e
            raise RayError(f"the Ray run failed: {_one_line(e)}") from e
        self._flush(force=True)
        if self.pending:
            raise RayError(f"{len(self.pending)} file(s) came back incomplete from the cluster")

    # -- rows as they come back -------------------------------------------------------------

    def _take(self, block: dict[str, np.ndarray]) -> None:
        n = len(block["kind"])
        for j in range(n):
            path = str(block["path"][j])
            pending = self.pending.setdefault(path, _Pending())
            if block["kind"][j] == FILE:
                pending.description = json.loads(str(block["info"][j]))
                self._know_model(str(block["model"][j]))
            else:
                pending.windows.append(
                    {
                        "k": int(block["stream_k"][j]),
                        "seq": int(block["seq"][j]),
                        "window": int(block["window"][j]),
                        "start": int(block["start_sample"][j]),
                        "end": int(block["end_sample"][j]),
                        "speech": float(block["speech"][j]),
                        "is_speech": bool(block["is_speech"][j]),
                        "run": bool(block["run"][j]),
                        "dropped": int(block["dropped_samples"][j]),
                        "partly": bool(block["partly"][j]),
                        "logits": block["logits"][j],
                        "compute_s": float(block["compute_s"][j]),
                    }
                )
            self._maybe_complete(path, pending)
        self._flush(force=False)

    def _know_model(self, description: str) -> None:
        if self.model is not None or not description:
            return
        self.model = _RemoteModel(json.loads(description))
        check_same_model(self.output.out, self.earlier, self.model)

    def _maybe_complete(self, path: str, pending: _Pending) -> None:
        d = pending.description
        if d is None:
            return
        if "error" in d:
            del self.pending[path]
            self.failed += 1
            self._failures.append((path, d["error"]))
            self.status.set(path, "skipped", d["error"])
            self.say(f"skipped {path}: {d['error']}")
            return
        if len(pending.windows) < sum(d["windows"]):
            return
        del self.pending[path]
        info, estimates = _estimates(path, pending, self.cfg)
        rows = file_rows(info, estimates, self.cfg.windows.hop_s)
        self._rows += [window_record(r) for r in rows if r["type"] == "window"]
        self._summaries += [summary_record(r) for r in rows if r["type"] == "summary"]
        self._files.append(path)
        self.analysed += 1
        self.windows += sum(len(e) for e in estimates)
        self.unrecorded += sum(info.left_out)
        if info.note is not None:
            self.say(info.note)
        if self.bar is not None:
            self.bar.advance(info.duration_s)

    def _flush(self, force: bool) -> None:
        if not self._files and not self._failures:
            return
        due = time.monotonic() - self._flushed_at >= FLUSH_S
        if not (force or due or len(self._files) >= self._flush_every):
            return
        self.output.write_part(self._rows, self._summaries, self._files, self._failures)
        for f in self._files:
            self.status.set(f, "done")
        self._rows, self._summaries, self._files, self._failures = [], [], [], []
        self._flushed_at = time.monotonic()

    def provenance(self, started: str, finished: bool) -> dict[str, Any]:
        run = {
            "started": started,
            "finished": timestamp() if finished else None,
            "analysed": self.analysed,
            "windows": self.windows,
            "unrecorded_windows": self.unrecorded,
            "ray": {
                "address": self.cluster.address if not self.cluster.started_here else "local",
                "actors": self.cfg.actors or 1,
                "gpus": self.cluster.gpus,
                "cpus": self.cluster.cpus,
            },
        }
        if self.model is None:
            raise RayError("no model description came back from the cluster")
        meta = describe(
            self.output.out, self.cfg, self.model, self.status.entries(), self.earlier, run
        )
        meta["format"] = "parquet"
        return meta


def _estimates(
    path: str, pending: _Pending, cfg: AnalyzeConfig
) -> tuple[FileInfo, list[list[Estimate]]]:
    """A finished file's estimates, each stream smoothed in order, as the local run makes them."""
    d = pending.description
    assert d is not None
    names: list[str] = d["streams"] or [DEFAULT_STREAM_NAME]
    by_stream: list[list[dict[str, Any]]] = [[] for _ in names]
    for w in pending.windows:
        by_stream[w["k"]].append(w)
    estimates: list[list[Estimate]] = []
    partly: list[tuple[bool, ...]] = []
    for k, rows in enumerate(by_stream):
        rows.sort(key=lambda w: w["seq"])
        stream = PreparedStream(
            spec=StreamSpec(names[k], None),
            signal=np.zeros(0, dtype=np.float32),
            index=np.array([w["window"] for w in rows], dtype=np.int64),
            start_sample=np.array([w["start"] for w in rows], dtype=np.int64),
            end_sample=np.array([w["end"] for w in rows], dtype=np.int64),
            speech=np.array([w["speech"] for w in rows], dtype=np.float64),
            is_speech=np.array([w["is_speech"] for w in rows], dtype=bool),
            run=np.array([w["run"] for w in rows], dtype=bool),
            dropped_samples=np.array([w["dropped"] for w in rows], dtype=np.int64),
            left_out=int(d["left_out"][k]),
        )
        ran = [w for w in rows if w["run"]]
        logits = np.stack([w["logits"] for w in ran]) if ran else np.zeros((0, 6), np.float32)
        compute_s = float(np.mean([w["compute_s"] for w in ran])) if ran else 0.0
        estimates.append(build_estimates(stream, logits, cfg.windows, compute_s=compute_s))
        partly.append(tuple(w["partly"] for w in rows))
    info = FileInfo(
        path=path,
        duration_s=float(d["duration_s"]),
        stream_names=tuple(names),
        note=d.get("note"),
        partly=tuple(partly),
        left_out=tuple(int(x) for x in d["left_out"]),
    )
    return info, estimates


def _streamser_cause(e: BaseException) -> StreamserError | None:
    """The StreamserError (a model that does not load, say) a cluster error wraps, if any."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, StreamserError):
            return x
        stack += [x.__cause__, x.__context__, getattr(x, "cause", None)]
    return None
