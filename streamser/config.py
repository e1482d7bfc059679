"""Configuration: frozen dataclasses, one per stage, built by the CLI from the config file + flags.

The config file (TOML, in the user config directory) holds defaults for the settings people keep
from run to run; command-line flags override it. Unknown keys are an error that names the valid
ones, so a typo never silently does nothing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from streamser.constants import BACKENDS, DEFAULT_MODEL_ID, WINDOW_S
from streamser.errors import StreamserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(StreamserError):
    """A bad setting in the config file or on the command line; one line, says what to do."""


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
    quantize: str | None = None
    """None or ``int8`` (dynamic int8 quantisation of the linear layers on the CPU)."""
    backend: str = "torch"
    """torch | onnxruntime (CPU, fp32; needs the ``onnx`` extra)."""


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


@dataclass(frozen=True)
class LogConfig:
    """What a run leaves on disk."""

    log: bool = True
    log_dir: str | None = None
    """Sessions root; None = the user data directory."""
    record: bool = False
    """Record the captured audio (native rate and channels) into the session."""


@dataclass(frozen=True)
class ListenConfig:
    """Everything ``streamser listen`` needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    logging: LogConfig = field(default_factory=LogConfig)
    headless: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> ListenConfig:
        w = self.windows
        if not 0.05 <= w.hop_s <= 60:
            raise ConfigError(f"--hop {w.hop_s} is out of range: use 0.05 to 60 seconds")
        if not 0 < w.first_s <= w.window_s:
            raise ConfigError(f"first window end {w.first_s} s must be in (0, {w.window_s}]")
        if not 0 <= w.vad_threshold <= 1:
            raise ConfigError(f"--vad-threshold {w.vad_threshold} must be between 0 and 1")
        if w.smooth_s < 0:
            raise ConfigError(f"--smooth-s {w.smooth_s} must be >= 0")
        if self.audio.fast and self.audio.input_path is None:
            raise ConfigError("--fast needs --input FILE (a microphone runs in real time)")
        if self.model.quantize not in (None, "int8"):
            raise ConfigError(f"--quantize {self.model.quantize!r}: the only choice is int8")
        if self.model.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.model.backend!r}: choose torch or onnxruntime")
        if self.model.backend == "onnxruntime" and self.model.quantize is not None:
            raise ConfigError("--backend onnxruntime runs fp32 only: drop --quantize int8")
        return self


FILE_KEYS: dict[str, tuple[str, str, type]] = {
    # file key: (section attribute, field, type)
    "device": ("audio", "device", str),
    "samplerate": ("audio", "sample_rate_hz", int),
    "channels": ("audio", "channels", int),
    "model": ("model", "model", str),
    "revision": ("model", "revision", str),
    "compute": ("model", "compute", str),
    "quantize": ("model", "quantize", str),
    "backend": ("model", "backend", str),
    "hop": ("windows", "hop_s", float),
    "smooth_s": ("windows", "smooth_s", float),
    "vad": ("windows", "vad", bool),
    "vad_threshold": ("windows", "vad_threshold", float),
    "log_dir": ("logging", "log_dir", str),
    "log": ("logging", "log", bool),
    "record": ("logging", "record", bool),
}
"""Settings the config file may hold, under ``[listen]`` (or at top level)."""


def config_path() -> Path:
    """``$STREAMSER_CONFIG`` or ``<user config dir>/streamser/config.toml``."""
    env = os.environ.get("STREAMSER_CONFIG")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path("streamser") / "config.toml"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """Settings from the config file (empty when it does not exist); errors are one line."""
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    data = data.get("listen", data)
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(FILE_KEYS))}"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        typ = FILE_KEYS[key][2]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is str and isinstance(value, int) and key == "device":
            value = str(value)
        if not isinstance(value, typ):
            raise ConfigError(f"config file {path}: {key} must be a {typ.__name__}")
        out[key] = value
    return out


def apply_file_settings(cfg: ListenConfig, settings: dict[str, Any]) -> ListenConfig:
    """Return ``cfg`` with the config file's settings applied (before command-line flags)."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        section, name, _ = FILE_KEYS[key]
        sections.setdefault(section, {})[name] = value
    updates = {}
    for section, values in sections.items():
        current = getattr(cfg, section)
        updates[section] = type(current)(**{**asdict(current), **values})
    return type(cfg)(**{f.name: updates.get(f.name, getattr(cfg, f.name)) for f in fields(cfg)})
