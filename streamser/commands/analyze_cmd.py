"""``streamser analyze FILE_OR_DIR... -o OUT``: the model over audio files as fast as possible.

The work (checking the output, finding the files, picking a session's model, resuming, the CSV
and Parquet results, the provenance file) is :func:`streamser.session.analysis.analyze_files`;
see there. With ``--ray`` it is :func:`streamser.session.ray_analyze.analyze_on_ray`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streamser.config import AnalyzeConfig
from streamser.settings import build_config, read_config_file


def analyze(args: argparse.Namespace) -> int:
    from streamser.commands.listen import load_for
    from streamser.session.analysis import analyze_files

    file_settings = read_config_file()
    cfg = build_config(AnalyzeConfig, vars(args), file=file_settings)
    model_given = args.model is not None or file_settings.get("model") is not None
    if cfg.ray is not None:
        from streamser.session.ray_analyze import analyze_on_ray

        result: Any = analyze_on_ray(args.inputs, cfg, load_for, say=_say)
    else:
        result = analyze_files(args.inputs, cfg, load_for, say=_say, model_given=model_given)
    notes = []
    if result.unrecorded_windows:
        notes.append(f"{result.unrecorded_windows} window(s) without recorded audio left out")
    if result.failed:
        notes.append(f"{result.failed} unreadable file(s) skipped")
    _say(
        f"analysed {result.analysed} file(s), {result.windows} windows -> {result.output}"
        + "".join(f"; {n}" for n in notes)
    )
    return 0


def _say(message: str) -> None:
    print(f"streamser: {message}", file=sys.stderr)
