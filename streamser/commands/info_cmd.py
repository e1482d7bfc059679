"""``streamser devices`` and ``streamser config``."""

from __future__ import annotations

import argparse
import json

from streamser.config import FILE_KEYS, ListenConfig
from streamser.console import write_out
from streamser.settings import build_config, config_path, read_config_file


def devices(args: argparse.Namespace) -> int:
    from streamser.audio.devices import format_device_table, list_input_devices

    write_out(format_device_table(list_input_devices()))
    return 0


def show_config(args: argparse.Namespace) -> int:
    """The settings the config file may hold, by its own key names, with their effective values
    (the file's, else the defaults), and where sessions go."""
    from streamser.session.files import resolve_sessions_root

    path = config_path()
    file = read_config_file(path)
    cfg = build_config(ListenConfig, file=file)
    values = {key: getattr(getattr(cfg, s.section or ""), s.name) for key, s in FILE_KEYS.items()}
    state = "found" if path.exists() else "not present: defaults apply"
    write_out(f"# config file: {path} ({state}); keys go under [listen]")
    write_out(f"# sessions directory: {resolve_sessions_root(cfg.logging.log_dir)}")
    write_out(json.dumps(values, indent=2))
    return 0
