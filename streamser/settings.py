"""Where settings come from: the defaults, then the config file, then the command line.

:func:`build_config` is the one builder every command uses. The config file (TOML, in the user
config directory) holds the settings people keep from run to run; command-line flags override
it, and flags left unset override nothing. Unknown keys are an error that names the valid ones,
so a typo never silently does nothing; every value is checked against its rule in
:data:`streamser.config.SETTINGS`, and a bad one is a one-line :class:`ConfigError` that names
the flag or the file's key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from streamser.config import FILE_KEYS, SECTIONS, SETTINGS, ConfigError, Setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FILE_SECTION = "listen"
"""The config file's table; its keys may also stand at the top level."""

C = TypeVar("C")


def config_path() -> Path:
    """``$STREAMSER_CONFIG`` or ``<user config dir>/streamser/config.toml``."""
    env = os.environ.get("STREAMSER_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_config_path("streamser") / "config.toml"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """The config file's settings by key, each checked (empty when there is no file).

    Every problem (unreadable, not UTF-8, not TOML, ``[listen]`` not a table, an unknown key,
    a value of the wrong type or out of range) is a one-line ConfigError naming the file.
    """
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    table = data.pop(FILE_SECTION, {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"config file {path}: {FILE_SECTION} must be a table of settings "
            f"([{FILE_SECTION}] on a line of its own, the settings below it)"
        )
    settings = {**data, **table}
    unknown = sorted(set(settings) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(FILE_KEYS))}"
        )
    return {
        key: FILE_KEYS[key].check(value, f"config file {path}: {key} =")
        for key, value in settings.items()
    }


def build_config(
    kind: type[C],
    flags: Mapping[str, Any] | None = None,
    *,
    file: Mapping[str, Any] | None = None,
    defaults: C | None = None,
) -> C:
    """A validated ``kind`` (``ListenConfig``, ``AnalyzeConfig``, or one section such as
    ``ModelConfig`` or ``LogConfig``): ``defaults`` (or ``kind()``), then the config file's
    settings, then ``flags``.

    ``flags`` are the parsed command-line arguments by destination (``vars(args)``); None or a
    missing name means "not given". ``file`` holds settings by config-file key, as
    :func:`read_config_file` returns them; None reads the user's config file.
    """
    file_settings = read_config_file() if file is None else file
    given = flags or {}
    base = defaults if defaults is not None else kind()
    section = next((name for name, cls in SECTIONS.items() if cls is kind), None)
    values: dict[tuple[str | None, str], Any] = {}
    for s in _settings_of(base, section):
        if s.key is not None and file_settings.get(s.key) is not None:
            values[s.section, s.name] = s.check(file_settings[s.key], f"config file: {s.key} =")
        if given.get(s.dest) is not None:
            values[s.section, s.name] = s.check(given[s.dest])
    cfg = _assemble(base, section, values)
    validate = getattr(cfg, "validate", None)
    return validate() if validate is not None else cfg


def _settings_of(base: Any, section: str | None) -> list[Setting]:
    """The settings a config object holds: one section's, or those of each section it holds
    and its own fields'."""
    if section is not None:
        return [s for s in SETTINGS if s.section == section]
    names = {f.name for f in fields(base)}
    return [s for s in SETTINGS if (s.section in names if s.section else s.name in names)]


def _assemble(base: Any, section: str | None, values: dict[tuple[str | None, str], Any]) -> Any:
    """``base`` with the given values of ``section``, and of each section it holds."""
    names = {f.name for f in fields(base)}
    own = {name: v for (sec, name), v in values.items() if sec == section and name in names}
    nested = {
        name: _assemble(getattr(base, name), name, values)
        for name in names
        if section is None and name in SECTIONS
    }
    return replace(base, **own, **nested)
