"""``streamser demo``: the dashboard on the bundled speech clip, in real time.

It uses ExHuBERT when its weights are already cached (never downloading them) and the random
demo model otherwise, so a newcomer sees streamser work in seconds without a microphone or the
2.67 GB download.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from streamser.assets import speech_clip
from streamser.config import AudioConfig, ConfigError, ListenConfig, ModelConfig
from streamser.console import hint, require_terminal
from streamser.constants import DEFAULT_MODEL_ID, DEFAULT_MODEL_REVISION
from streamser.settings import build_config, read_config_file

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
            f"or use: {hint('listen')} --input FILE"
        )
    file = read_config_file()
    chosen = args.model or file.get("model")
    if chosen is None:  # neither the flag nor the config file names a model
        chosen = DEFAULT_MODEL_ID if default_model_is_cached() else "demo"
        if chosen == "demo":
            log.info("ExHuBERT is not cached: showing the demo model (random weights)")
    defaults = ListenConfig(model=ModelConfig(model=chosen))
    cfg = build_config(ListenConfig, vars(args), file=file, defaults=defaults)
    if not cfg.headless:
        require_terminal("demo")
    cfg = replace(cfg, audio=AudioConfig(input_path=str(clip), fast=False))
    from streamser.audio.replay import FileSource
    from streamser.commands.listen import load_for, run_dashboard
    from streamser.engine.pipeline import Pipeline
    from streamser.outputs.headless import run_headless
    from streamser.session.sink import session_sink_for

    lg = cfg.logging
    pipeline = Pipeline(
        cfg.validate(),
        load_for(cfg.model),
        FileSource(clip, realtime=True),
        sink=session_sink_for(lg.log, lg.log_dir, lg.record),
    )
    if cfg.headless:
        return run_headless(pipeline)
    return run_dashboard(pipeline, title="streamser demo")
