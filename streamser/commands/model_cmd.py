"""``streamser model info`` and ``streamser model fetch``."""

from __future__ import annotations

import argparse

from streamser.labels import DEMO_WARNING
from streamser.model.loading import load_network, resolve_source
from streamser.model.runtime import EmotionModel, resolve_compute


def model_info(args: argparse.Namespace) -> int:
    """Print where the weights are and what streamser knows about them."""
    network, info = load_network(args.model, args.revision, verify=args.verify)
    em = EmotionModel(network, info, resolve_compute(args.compute))
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
        print(f"{key:<{width}}  {value}")
    return 0


def model_fetch(args: argparse.Namespace) -> int:
    """Download config + weights into the Hugging Face cache, verify them and prepare the copy."""
    if args.model == "demo":
        print("the demo model is built in: nothing to fetch")
        return 0
    source = resolve_source(args.model, args.revision)
    if source.kind == "local":
        print(f"{source.name} is a local directory: nothing to fetch")
    _, info = load_network(args.model, args.revision, verify=args.verify)
    print(f"{info.name}: weights at {info.weights_path}")
    print(f"sha256 {info.sha256_status}; fast-start copy at {info.loaded_from}")
    return 0
