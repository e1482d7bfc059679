"""The types every layer shares, at the bottom of the package: nothing here imports above
the constants.

* :class:`Estimate`: one window's reading, the unit every consumer receives;
* :class:`ModelInfo` and :class:`ComputeInfo`: what is known about the weights and how they run;
* :class:`AnalysisModel`: what the engine needs of a model (the real one, or a test stand-in);
* :class:`StatusSnapshot` and :class:`DashboardController`: what the dashboard reads and drives,
  implemented by the live pipeline and by a session replay alike.

Keeping them here lets the engine, the session layer and the dashboard exchange data without
importing one another.
"""

from __future__ import annotations

from collections.abc import Callable, Reversible
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from streamser.constants import DEFAULT_STREAM_NAME

if TYPE_CHECKING:  # the command line's start-up (config imports this module) stays numpy-free
    import numpy as np


@dataclass(frozen=True)
class Estimate:
    """The model's reading of one window, stamped with the stream clock and wall clock.

    Times ``t_start_s``/``t_end_s`` are on the stream's sample clock (16 kHz samples since the
    stream started, divided by 16,000), so they equal the capture time of the audio.
    ``probs`` and the derived values are ``None`` when the window was not run through the model
    (``--skip-non-speech`` on a non-speech window). ``skipped_windows`` and ``dropped_samples``
    are running totals at the time of this estimate, for this estimate's stream.
    Logs written before streams existed have no ``stream`` key and read as the default stream.
    """

    seq: int
    window: int
    t_start_s: float
    t_end_s: float
    wall_time: str
    probs: tuple[float, ...] | None
    arousal: float | None
    valence: float | None
    arousal_smooth: float | None
    valence_smooth: float | None
    speech: float | None
    is_speech: bool
    compute_s: float
    latency_s: float
    skipped_windows: int
    dropped_samples: int
    stream: str = DEFAULT_STREAM_NAME
    """The stream's name: ``main`` for a mono mix, a channel's name with ``--per-channel``."""

    def to_json_dict(self) -> dict[str, Any]:
        """A plain dict for JSON: the headless output's and the session log's schema."""
        d = asdict(self)
        d["probs"] = list(self.probs) if self.probs is not None else None
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_json_dict`; unknown keys are ignored (old readers, new logs)."""
        probs = d.get("probs")
        return cls(
            seq=int(d["seq"]),
            window=int(d.get("window", d["seq"])),
            t_start_s=float(d["t_start_s"]),
            t_end_s=float(d["t_end_s"]),
            wall_time=str(d["wall_time"]),
            probs=tuple(float(p) for p in probs) if probs is not None else None,
            arousal=_opt_float(d.get("arousal")),
            valence=_opt_float(d.get("valence")),
            arousal_smooth=_opt_float(d.get("arousal_smooth")),
            valence_smooth=_opt_float(d.get("valence_smooth")),
            speech=_opt_float(d.get("speech")),
            is_speech=bool(d.get("is_speech", True)),
            compute_s=float(d.get("compute_s", 0.0)),
            latency_s=float(d.get("latency_s", 0.0)),
            skipped_windows=int(d.get("skipped_windows", 0)),
            dropped_samples=int(d.get("dropped_samples", 0)),
            stream=str(d.get("stream", DEFAULT_STREAM_NAME)),
        )


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class StreamSpec:
    """One analysed stream of a run: its name and the input channel it reads."""

    name: str
    channel: int | None
    """The 0-based input channel; None for the mono mix of every channel."""

    def to_json_dict(self) -> dict[str, Any]:
        """As meta.json lists it: the channel counted from 1, as users name it."""
        return {"name": self.name, "channel": None if self.channel is None else self.channel + 1}

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> StreamSpec:
        channel = d.get("channel")
        return cls(name=str(d["name"]), channel=None if channel is None else int(channel) - 1)


MAIN_STREAM = StreamSpec(DEFAULT_STREAM_NAME, None)
"""The one stream of a run without ``--per-channel``: every channel mixed to mono."""


@dataclass(frozen=True)
class ModelInfo:
    """Where the weights came from and what is known about them (shown by ``model info``)."""

    name: str
    kind: str  # "hub" | "local" | "demo" | "remote" (a streamser serve; loaded_from: its URL)
    revision: str | None
    config_path: str | None
    weights_path: str | None  # the source file (HF cache or local directory)
    loaded_from: str | None  # the file actually read (often the safetensors copy)
    size_bytes: int | None
    sha256: str | None
    sha256_status: str
    n_params: int
    demo: bool = False
    load_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def random_weights(
        cls, name: str, status: str, n_params: int, load_s: float | None = None
    ) -> ModelInfo:
        """For a network built with random weights (the demo model, the bench): no file."""
        return cls(
            name=name,
            kind="demo",
            revision=None,
            config_path=None,
            weights_path=None,
            loaded_from=None,
            size_bytes=None,
            sha256=None,
            sha256_status=status,
            n_params=n_params,
            demo=True,
            load_s=load_s,
        )


@dataclass(frozen=True)
class ComputeInfo:
    """How the model runs right now: copied at one instant, so safe to read on any thread."""

    device: str
    """``"cpu"``, ``"cuda"`` or ``"mps"``."""
    dtype: str
    """The compute dtype of the network's main path, e.g. ``"float32"``."""
    backend: str
    """``"torch"`` or ``"onnxruntime"``."""
    fallbacks: int
    """Half-precision outputs that were not finite and were recomputed in fp32, so far."""
    precision: str = "fp32"
    """The path the network runs: ``fp32``, ``half-bf16``, ``half-fp16`` or ``int8``."""


class AnalysisModel(Protocol):
    """What the engine needs of a model: preprocessed windows in, logits out, and a description.

    :class:`streamser.model.runtime.EmotionModel` implements it; tests implement it with small
    stand-ins (a slow model, a model that counts its calls) without touching torch.
    """

    info: ModelInfo

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed ``(batch, 48000)`` float32 windows -> ``(batch, 6)`` float32 logits."""
        ...

    def compute_info(self) -> ComputeInfo:
        """Where and how the network runs, at this instant."""
        ...


@dataclass(frozen=True)
class StreamStatus:
    """One stream's part of the status: what the dashboard shows for the selected stream."""

    name: str
    level_dbfs: float | None
    """Input level of this stream's channel (or the mix) in the latest block, in dBFS."""
    clipping: bool
    silence_warning: str | None
    """Set while this stream's input has been digitally silent long enough to suspect a muted
    or unplugged microphone."""
    estimates: int
    skipped_windows: int


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the status area shows, copied at one instant.

    Frozen so the UI can compare two snapshots with ``==`` and redraw only when one changed,
    and so a snapshot taken on one thread can be read on another without locks.
    """

    device: str
    """Input device name (or the file being replayed)."""
    sample_rate_hz: int
    """Native rate the device was opened at, before resampling to 16 kHz."""
    model_name: str
    demo_model: bool
    """True when the weights are random: the dashboard then says its output is meaningless."""
    compute_device: str
    """Where the model runs, e.g. ``"cpu"`` or ``"cuda:0"``."""
    dtype: str
    """The precision path the model runs, e.g. ``"fp32"``, ``"half-bf16"`` or ``"int8"``."""
    hop_s: float
    """Current hop between analysed windows, in seconds (it adapts when compute falls behind)."""
    rtf: float | None
    """Real-time factor: compute time per window divided by the hop; ``None`` before the first."""
    latency_s: float | None
    """Seconds from capturing a window's last sample to its estimate; ``None`` before the first."""
    skipped_windows: int
    """Windows dropped because compute fell behind (latest-wins), running total."""
    dropped_samples: int
    """Input samples lost (ring overflow or device gaps), running total."""
    recording: bool
    """Audio is being written to the session."""
    muted: bool
    """Capture is muted: no audio reaches the model or the recording."""
    logging: bool
    """Estimates are being written to the session log."""
    log_error: str | None
    """Why logging stopped, when it did; shown as a banner because data is being lost."""
    session_path: str | None
    level_dbfs: float | None
    """Input level of the latest block in dBFS; ``None`` when unknown (e.g. a replay)."""
    clipping: bool
    """The latest block reached full scale."""
    silence_warning: str | None
    """Set when the input has been silent long enough to suspect the wrong device."""
    source_error: str | None
    """Set while the source is failing, e.g. device lost and being retried."""
    finished: bool
    """A file or replay reached its end; no more estimates will come."""
    recorder_dropped_frames: int = 0
    """Capture frames the audio recorder lost (the ring overwrote them first), running total."""
    streams: tuple[StreamStatus, ...] = ()
    """Each analysed stream, in the run's order (one, ``main``, without ``--per-channel``);
    empty where the controller does not know them (then the estimates' names are the streams)."""


@runtime_checkable
class DashboardController(Protocol):
    """The dashboard's view of a running analysis.

    The dashboard owns the lifecycle: it calls :meth:`start` when mounted and :meth:`stop`
    when it quits, so the session is closed cleanly however the user leaves.
    """

    is_replay: bool
    """True when estimates come from a recorded session rather than live capture."""

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        """Call ``fn`` for every new estimate; it is called from an engine thread."""
        ...

    def history_since(self, seq: int) -> list[Estimate]:
        """Estimates with a ``seq`` above ``seq`` (all of them with -1), oldest first, from the
        run's one bounded history: the dashboard keeps no copy of its own."""
        ...

    def status(self) -> StatusSnapshot:
        """A cheap, thread-safe snapshot; the dashboard polls it on its frame timer."""
        ...

    def start(self) -> None:
        """Start producing estimates."""
        ...

    def stop(self) -> None:
        """Shut down cleanly and close the session; calling it again does nothing."""
        ...

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute capture."""
        ...

    def set_recording(self, on: bool) -> None:
        """Start or stop writing audio to the session."""
        ...

    def add_mark(self, note: str) -> None:
        """Record a user-marked event with a free-text note, stamped when called."""
        ...


def estimates_after(seq: int, history: Reversible[Estimate]) -> list[Estimate]:
    """The newest estimates of ``history`` (ordered by ``seq``) with a ``seq`` above ``seq``,
    oldest first; reads only as far back as it must."""
    out: list[Estimate] = []
    for est in reversed(history):
        if est.seq <= seq:
            break
        out.append(est)
    out.reverse()
    return out
