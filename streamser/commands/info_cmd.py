"""``streamser devices`` and ``streamser config``."""

from __future__ import annotations

import argparse
import json

from streamser.config import ListenConfig, apply_file_settings, config_path, read_config_file


def devices(args: argparse.Namespace) -> int:
    from streamser.audio.devices import format_device_table, list_input_devices

    print(format_device_table(list_input_devices()))
    return 0


def show_config(args: argparse.Namespace) -> int:
    path = config_path()
    settings = read_config_file(path)
    cfg = apply_file_settings(ListenConfig(), settings)
    state = "found" if path.exists() else "not present: defaults apply"
    print(f"# config file: {path} ({state})")
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0
