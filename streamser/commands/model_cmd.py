"""``streamser model info`` and ``streamser model fetch``."""

from __future__ import annotations

import argparse

from streamser.config import ModelConfig
from streamser.console import write_out
from streamser.labels import DEMO_WARNING
from streamser.model.loading import load_network, resolve_source
from streamser.model.runtime import EmotionModel, resolve_compute
from streamser.settings import build_config


def model_info(args: argparse.Namespace) -> int:
    """Print where the weights are and what streamser knows about them."""
    cfg = build_config(ModelConfig, vars(args))
    network, info = load_network(cfg.model, cfg.revision, verify=cfg.verify)
    em = EmotionModel(network, info, resolve_compute(cfg.compute))
    rows = [
        (
            "model",
            info.name + (f"  [{DEMO_WARNING}]" if info.demo else ""),
        ),
        ("source", info.kind + (f" @ {info.revision}" if info.revision else "")),
        ("config", info.config_path or "(built in)"),
        ("weights", info.weights_path or "(built in, seeded random)"),
        ("loaded from", info.loaded_from or "(memory)"),
        ("file size", f"{info.size_bytes:,} bytes" if info.size_bytes is not None else "-"),
        ("sha256", info.sha256 or "-"),
        ("sha256 status", info.sha256_status),
        ("parameters", f"{info.n_params:,}"),
        ("layers", str(network.config.num_hidden_layers)),
        ("compute", em.describe()),
        ("load time", f"{info.load_s:.2f} s" if info.load_s is not None else "-"),
        ("licence", "CC BY-NC-SA 4.0 (weights; research use only)" if not info.demo else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        write_out(f"{key:<{width}}  {value}")
    return 0


def model_fetch(args: argparse.Namespace) -> int:
    """Download config + weights into the Hugging Face cache, verify them and prepare the copy."""
    cfg = build_config(ModelConfig, vars(args))
    if cfg.model == "demo":
        write_out("the demo model is built in: nothing to fetch")
        return 0
    source = resolve_source(cfg.model, cfg.revision)
    if source.kind == "local":
        write_out(f"{source.name} is a local directory: nothing to fetch")
    _, info = load_network(cfg.model, cfg.revision, verify=cfg.verify)
    write_out(f"{info.name}: weights at {info.weights_path}")
    write_out(f"sha256 {info.sha256_status}; fast-start copy at {info.loaded_from}")
    return 0
