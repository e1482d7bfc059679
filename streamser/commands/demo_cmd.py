"""``streamser demo``: the dashboard on the bundled speech clip, in real time.

It uses ExHuBERT when its weights are already cached (never downloading them) and the random
demo model otherwise, so a newcomer sees streamser work in seconds without a microphone or the
2.67 GB download.
"""

from __future__ import annotations

import argparse
import logging

from streamser.assets import speech_clip
from streamser.config import AudioConfig, ConfigError, ModelConfig
from streamser.constants import DEFAULT_MODEL_ID, DEFAULT_MODEL_REVISION

log = logging.getLogger("streamser")


def default_model_is_cached() -> bool:
    """True when ExHuBERT's config and weights are in the Hugging Face cache (no network)."""
    from streamser.model.loading import hub_file

    try:
        return all(
            hub_file(DEFAULT_MODEL_ID, name, DEFAULT_MODEL_REVISION, cached_only=True) is not None
            for name in ("config.json", "pytorch_model.bin")
        )
    except Exception:  # a broken cache is "not cached" for the demo's purpose
        return False


def demo(args: argparse.Namespace) -> int:
    clip = speech_clip()
    if clip is None:
        raise ConfigError(
            "the bundled speech clip is not installed; run from a source checkout "
            "or use: streamser listen --input FILE"
        )
    model_name = args.model or (DEFAULT_MODEL_ID if default_model_is_cached() else "demo")
    if model_name == "demo":
        log.info("ExHuBERT is not cached: showing the demo model (random weights)")
    from dataclasses import replace

    from streamser.commands.listen import build_listen_config, load_for, run_dashboard, run_headless
    from streamser.engine.pipeline import Pipeline

    base = build_listen_config(args)
    cfg = replace(
        base,
        model=ModelConfig(model=model_name, compute=args.compute, verify=args.verify),
        audio=AudioConfig(input_path=str(clip), fast=False),
    )
    from streamser.audio.sources import FileSource
    from streamser.session.sink import session_sink_for

    lg = cfg.logging
    pipeline = Pipeline(
        cfg.validate(),
        load_for(cfg.model),
        FileSource(clip, realtime=True),
        sink=session_sink_for(lg.log, lg.log_dir, lg.record),
    )
    if args.headless:
        return run_headless(pipeline)
    return run_dashboard(pipeline, title="streamser demo")
