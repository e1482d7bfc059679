"""Configuration: frozen dataclasses, one per stage, and the rule of every setting.

Each user setting is one :class:`Setting` in :data:`SETTINGS`: its field, its command-line
flag, its config-file key, its type and its valid range or choices. Validation happens only
here, against that table, so the command line, the config file and code that builds these
dataclasses directly all accept the same values and refuse the rest with the same one-line
message. Where the values come from (defaults, then the config file, then the flags) is
:mod:`streamser.settings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from streamser.constants import (
    BACKENDS,
    COMPUTE_CHOICES,
    DEFAULT_MODEL_ID,
    MAX_HOP_S,
    MAX_STREAMS,
    MIN_HOP_S,
    PRECISIONS,
    WINDOW_S,
)
from streamser.contracts import MAIN_STREAM, StreamSpec
from streamser.errors import StreamserError


class ConfigError(StreamserError):
    """A bad setting in the config file or on the command line; one line, says what to do."""


@dataclass(frozen=True)
class Setting:
    """One user setting: where it lives, how it is spelt, and which values it takes."""

    section: str | None
    """The config dataclass that holds it (``model``, ``audio``, ...); None: the command's own."""
    name: str
    """Its field in that dataclass."""
    dest: str
    """Its name among the parsed command-line arguments (None there means "not given")."""
    flag: str | None
    """Its command-line flag, for messages."""
    key: str | None = None
    """Its key in the config file; None: command line only."""
    kind: type = str
    lo: float | None = None
    """Smallest valid number (inclusive)."""
    hi: float | None = None
    """Largest valid number (inclusive)."""
    unit: str = ""
    choices: tuple[str, ...] | None = None
    path: bool = False
    """A file-system path: ``~`` is expanded."""

    @property
    def label(self) -> str:
        return self.flag or str(self.key)

    def check(self, value: Any, where: str | None = None) -> Any:
        """``value`` normalised (ints as floats, ``~`` expanded) or a one-line ConfigError.

        ``where`` names its origin in the message: the flag (default) or a config-file key.
        None is always valid: it means "not set".
        """
        where = where or self.label
        if value is None:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.key == "device" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a device index written as a number
        if not _is_a(value, self.kind):
            raise ConfigError(f"{where} {_show(value)} must be {_KIND_NAMES[self.kind]}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{where} {_show(value)} is not a choice: use {_either(self.choices)}"
            )
        if self.kind in (int, float):
            self._check_range(value, where)
        if self.path:
            value = os.path.expanduser(value)
        return value

    def _check_range(self, value: float, where: str) -> None:
        inside = math.isfinite(value)
        inside = inside and (self.lo is None or value >= self.lo)
        inside = inside and (self.hi is None or value <= self.hi)
        if inside:
            return
        if self.lo is not None and self.hi is not None:
            valid = f"{self.lo:g} to {self.hi:g}{self.unit}"
        elif self.lo is not None:
            valid = f"{self.lo:g}{self.unit} or more"
        else:
            valid = f"{self.hi:g}{self.unit} or less"
        finite = " (a finite number)" if self.kind is float else ""
        raise ConfigError(f"{where} {_show(value)} is out of range: use {valid}{finite}")


def _is_a(value: Any, kind: type) -> bool:
    """``isinstance``, except that a boolean is not a number here."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


_KIND_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _show(value: Any) -> str:
    """A value as the user wrote it: TOML's spelling of text and booleans."""
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


def _either(choices: Iterable[str]) -> str:
    c = list(choices)
    return c[0] if len(c) == 1 else ", ".join(c[:-1]) + " or " + c[-1]


_S = Setting
SECONDS = " seconds"
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # section  field             dest               flag                  config-file key
    _S("model", "model",         "model",           "--model",            "model"),
    _S("model", "revision",      "revision",        "--revision",         "revision"),
    _S("model", "compute",       "compute",         "--compute",          "compute",
       choices=COMPUTE_CHOICES),
    _S("model", "verify",        "verify",          "--no-verify",        kind=bool),
    _S("model", "precision",     "precision",       "--precision",        "precision",
       choices=PRECISIONS),
    _S("model", "backend",       "backend",         "--backend",          "backend",
       choices=BACKENDS),
    _S("audio", "device",        "device",          "--device",           "device"),
    # The device checks rate and channels itself: its message lists what it takes.
    _S("audio", "sample_rate_hz", "samplerate",     "--samplerate",       "samplerate", int),
    _S("audio", "channels",      "channels",        "--channels",         "channels", int),
    _S("audio", "input_path",    "input",           "--input",            path=True),
    _S("audio", "fast",          "fast",            "--fast",             kind=bool),
    _S("audio", "reconnect",     "reconnect",       "--reconnect",        kind=bool),
    _S("windows", "hop_s",       "hop",             "--hop",              "hop", float,
       MIN_HOP_S, MAX_HOP_S, SECONDS),
    _S("windows", "first_s",     "first_s",         "--full-windows-only", kind=float),
    _S("windows", "smooth_s",    "smooth_s",        "--smooth-s",         "smooth_s", float,
       0.0, None, SECONDS),
    _S("windows", "vad",         "vad",             "--no-vad",           "vad", bool),
    _S("windows", "vad_threshold", "vad_threshold", "--vad-threshold",    "vad_threshold", float,
       0.0, 1.0),
    _S("windows", "skip_non_speech", "skip_non_speech", "--skip-non-speech", kind=bool),
    _S("streams", "per_channel", "per_channel",  "--per-channel",      "per_channel", bool),
    _S("streams", "channels",    "streams",         "--streams",          "streams"),
    _S("streams", "names",       "stream_names",    "--stream-names",     "stream_names"),
    _S("logging", "log",         "log",             "--no-log",           "log", bool),
    _S("logging", "log_dir",     "log_dir",         "--log-dir",          "log_dir", path=True),
    _S("logging", "record",      "record",          "--record",           "record", bool),
    _S(None, "headless",         "headless",        "--headless",         kind=bool),
    _S(None, "batch",            "batch",           "--batch",            kind=int, lo=1),
    _S(None, "workers",          "workers",         "--workers",          kind=int, lo=0),
    _S(None, "ray",              "ray",             "--ray"),
    _S(None, "actors",           "actors",          "--actors",           kind=int, lo=1),
    _S(None, "output",           "output",          "--output",           path=True),
)
# fmt: on
"""Every setting a command takes from its flags or the config file."""

FILE_KEYS: dict[str, Setting] = {s.key: s for s in SETTINGS if s.key is not None}
"""Settings the config file may hold, under ``[listen]`` (or at top level), by key."""


def check_fields(obj: Any, section: str | None) -> None:
    """Every field of ``obj`` that is a setting of ``section``, against its rule."""
    for s in SETTINGS:
        if s.section == section and hasattr(obj, s.name):
            s.check(getattr(obj, s.name))


@dataclass(frozen=True)
class ModelConfig:
    """Which weights, where to run them."""

    model: str = DEFAULT_MODEL_ID
    """Hub id, local directory, or ``demo``."""
    revision: str | None = None
    """Hub revision; None means the model card's revision for the default model."""
    compute: str = "auto"
    """auto | cpu | cuda | mps."""
    verify: bool = True
    """Check the weights' sha256 once, on first load."""
    precision: str | None = None
    """auto | fp32 | half | int8; None: the device's default (half on CUDA, fp32 elsewhere)."""
    backend: str = "torch"
    """torch | onnxruntime (CPU, fp32; needs the ``onnx`` extra)."""

    def validate(self) -> ModelConfig:
        check_fields(self, "model")
        if self.backend == "onnxruntime" and self.precision not in (None, "fp32"):
            raise ConfigError(
                f"--backend onnxruntime runs fp32 only: drop --precision {self.precision}"
            )
        return self


@dataclass(frozen=True)
class AudioConfig:
    """Where audio comes from."""

    device: str | None = None
    """Input device index or part of its name; None = system default."""
    sample_rate_hz: int | None = None
    """Override the device's native rate."""
    channels: int | None = None
    """Override the device's channel count."""
    input_path: str | None = None
    """Replay this file instead of capturing."""
    fast: bool = False
    """Replay the file as fast as possible, losslessly (every window computed)."""
    block_s: float = 0.02
    """Capture block length (PortAudio callback period)."""
    ring_s: float = 30.0
    """Capture ring buffer length; older unread audio is overwritten (and counted)."""
    reconnect: bool = True
    """Retry a lost input device every few seconds."""

    def validate(self) -> AudioConfig:
        check_fields(self, "audio")
        if self.fast and self.input_path is None:
            raise ConfigError("--fast needs --input FILE (a microphone runs in real time)")
        return self


@dataclass(frozen=True)
class WindowConfig:
    """How the stream is cut into model inputs and how estimates are post-processed."""

    hop_s: float = 1.0
    """Stream time between window ends."""
    first_s: float = 1.0
    """End of the first window (3.0 with --full-windows-only); earlier windows are padded."""
    window_s: float = WINDOW_S
    smooth_s: float = 4.0
    """Time constant of the exponential smoothing of arousal and valence."""
    vad: bool = True
    vad_threshold: float = 0.5
    """Windows whose speech fraction is below this are non-speech (not smoothed)."""
    skip_non_speech: bool = False
    """Do not run the model on non-speech windows (their rows carry null probabilities)."""

    def validate(self) -> WindowConfig:
        check_fields(self, "windows")
        if not 0 < self.first_s <= self.window_s:
            raise ConfigError(f"first window end {self.first_s} s must be in (0, {self.window_s}]")
        return self


@dataclass(frozen=True)
class StreamConfig:
    """Which streams a run analyses: one mono mix (the default), or one per input channel."""

    per_channel: bool = False
    """Each input channel (or each of ``channels``) is its own stream."""
    channels: str | None = None
    """The channels to analyse, counted from 1 and comma-separated (``"1,3"``); None: all."""
    names: str | None = None
    """The streams' names, comma-separated (``"alice,bob"``); None: ``ch1``, ``ch2``, ..."""

    def validate(self) -> StreamConfig:
        check_fields(self, "streams")
        if not self.per_channel and (self.channels is not None or self.names is not None):
            flag = "--streams" if self.channels is not None else "--stream-names"
            raise ConfigError(f"{flag} needs --per-channel (one stream per input channel)")
        chosen = _channel_list(self.channels) if self.channels is not None else None
        names = stream_name_list(self.names) if self.names is not None else None
        if chosen is not None and names is not None and len(names) != len(chosen):
            raise ConfigError(
                f"--stream-names gives {len(names)} name(s) for {len(chosen)} stream(s) in "
                f"--streams: give one name per stream"
            )
        return self

    def resolve(self, n_channels: int) -> tuple[StreamSpec, ...]:
        """The streams for an input of ``n_channels`` channels, or a one-line ConfigError."""
        if not self.per_channel:
            return (MAIN_STREAM,)
        chosen = _channel_list(self.channels) if self.channels else range(1, n_channels + 1)
        missing = [c for c in chosen if c > n_channels]
        if missing:
            raise ConfigError(
                f"--streams {self.channels}: the input has {n_channels} channel(s); "
                f"choose channels 1 to {n_channels}"
            )
        if len(chosen) > MAX_STREAMS:
            raise ConfigError(
                f"{len(chosen)} streams is more than {MAX_STREAMS}: choose some with --streams"
            )
        names = stream_name_list(self.names) if self.names else [f"ch{c}" for c in chosen]
        if len(names) != len(chosen):
            raise ConfigError(
                f"--stream-names gives {len(names)} name(s) for the input's {len(chosen)} "
                f"channel(s): give one name per channel, or choose channels with --streams"
            )
        return tuple(StreamSpec(name, c - 1) for name, c in zip(names, chosen))


def _channel_list(text: str) -> list[int]:
    """``"1,3"`` as ``[1, 3]``: distinct channels counted from 1."""
    try:
        chosen = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f'--streams "{text}": give channel numbers counted from 1, like 1,3'
        ) from None
    if any(c < 1 for c in chosen) or len(set(chosen)) != len(chosen):
        raise ConfigError(f'--streams "{text}": give distinct channel numbers counted from 1')
    return chosen


def stream_name_list(text: str, label: str = "--stream-names") -> list[str]:
    """``"alice,bob"`` as names that are safe in file names, JSON, LSL and OSC addresses.

    The one rule for stream names, wherever they come from (``label`` names the origin in the
    message: the flag, or a field of the serve protocol's hello).
    """
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not name or len(name) > 32 or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(
                f'{label} "{text}": each name is 1 to 32 letters, digits, "-", "_" '
                f'or "." (no spaces), separated by commas'
            )
    if len(set(names)) != len(names):
        raise ConfigError(f'{label} "{text}": the names must differ')
    return names


@dataclass(frozen=True)
class LogConfig:
    """What a run leaves on disk."""

    log: bool = True
    log_dir: str | None = None
    """Sessions root; None = the user data directory."""
    record: bool = False
    """Record the captured audio (native rate and channels) into the session."""

    def validate(self) -> LogConfig:
        check_fields(self, "logging")
        return self


@dataclass(frozen=True)
class ListenConfig:
    """Everything ``streamser listen`` (and ``demo``) needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    logging: LogConfig = field(default_factory=LogConfig)
    streams: StreamConfig = field(default_factory=StreamConfig)
    headless: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> ListenConfig:
        for section in (self.model, self.audio, self.windows, self.logging, self.streams):
            section.validate()
        check_fields(self, None)
        return self


OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")
"""What ``streamser analyze`` writes, by the output name's suffix."""


@dataclass(frozen=True)
class AnalyzeConfig:
    """Everything ``streamser analyze`` needs besides its inputs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    streams: StreamConfig = field(default_factory=StreamConfig)
    batch: int | None = None
    """Windows per model call; None: sized for the device (``ANALYZE_BATCH_CPU`` or
    ``ANALYZE_BATCH_GPU``)."""
    output: str = "analysis.jsonl"
    """The result: ``.jsonl`` (also the progress file), ``.csv`` or ``.parquet``; with ``ray``
    also a directory of Parquet files."""
    workers: int | None = None
    """Processes that decode, resample and detect speech ahead of the model; 0 does it all in
    this process, one file after the other; None: one per core but one (at most
    ``ANALYZE_MAX_WORKERS``)."""
    ray: str | None = None
    """Run on Ray: ``local`` (a Ray started on this machine, loopback only), ``auto`` or an
    address (``ray://host:port``, ``host:port``) of a running cluster; None: no Ray."""
    actors: int | None = None
    """With ``ray``: model actors (one model load each); None: one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> AnalyzeConfig:
        self.model.validate()
        self.windows.validate()
        self.streams.validate()
        check_fields(self, None)
        if self.ray is None and self.actors is not None:
            raise ConfigError("--actors needs --ray (the model actors of a Ray run)")
        if self.ray is not None:
            if self.output.endswith((".jsonl", ".csv")):
                raise ConfigError(
                    f"-o {self.output}: --ray writes Parquet: name a .parquet file or a directory"
                )
            return self
        if not self.output.endswith(OUTPUT_FORMATS):
            raise ConfigError(f"-o {self.output}: use a name ending in {', '.join(OUTPUT_FORMATS)}")
        return self


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "audio": AudioConfig,
    "windows": WindowConfig,
    "logging": LogConfig,
    "streams": StreamConfig,
}
"""The per-stage dataclasses, by the field name a command's config gives them."""
