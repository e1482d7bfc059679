"""``streamser model info [--numerics]`` and ``streamser model fetch``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from streamser.config import ModelConfig
from streamser.console import hint, write_out
from streamser.constants import PUBLISHED_WEIGHTS_BYTES, PUBLISHED_WEIGHTS_SHA256
from streamser.contracts import ModelInfo
from streamser.labels import DEMO_WARNING
from streamser.settings import build_config

if TYPE_CHECKING:
    from streamser.model.exhubert import ExHubert
    from streamser.model.numerics import NumericsReport

EXHUBERT_LICENCE = "CC BY-NC-SA 4.0 (the ExHuBERT weights; research and non-commercial use)"


def model_info(args: argparse.Namespace) -> int:
    """What is on this machine for the model, without downloading anything."""
    from streamser.model.loading import cached_source, hub_revision, load_network
    from streamser.model.runtime import load_model

    cfg = build_config(ModelConfig, vars(args))
    if cfg.model != "demo" and cached_source(cfg.model, cfg.revision) is None:
        rev = hub_revision(cfg.model, cfg.revision)
        _table(
            [
                ("model", cfg.model),
                ("source", f"hub @ {rev}"),
                ("weights", f"not downloaded: {hint('model fetch')} fetches them"),
                ("licence", _licence_of(cfg.model, None)),
            ]
        )
        return 0
    numerics = None
    if args.numerics:  # in fp32 on the weights as stored, before any other precision is made
        network, _ = load_network(cfg.model, cfg.revision, verify=cfg.verify)
        numerics = _numerics_of(network)
        del network
    em = load_model(
        cfg.model, cfg.compute, revision=cfg.revision, verify=cfg.verify, precision=cfg.precision
    )
    info = em.info
    _table(
        [
            ("model", info.name + (f"  [{DEMO_WARNING}]" if info.demo else "")),
            ("source", info.kind + (f" @ {info.revision}" if info.revision else "")),
            ("config", info.config_path or "(built in)"),
            ("weights", info.weights_path or "(built in, seeded random)"),
            ("loaded from", info.loaded_from or "(memory)"),
            ("file size", f"{info.size_bytes:,} bytes" if info.size_bytes is not None else "-"),
            ("sha256", info.sha256 or "-"),
            ("sha256 status", info.sha256_status),
            ("parameters", f"{info.n_params:,}"),
            ("layers", str(em.network.config.num_hidden_layers)),
            ("compute", f"{em.describe()} (precision {em.precision})"),
            ("load time", f"{info.load_s:.2f} s" if info.load_s is not None else "-"),
            ("licence", _licence_of(cfg.model, info)),
        ]
    )
    if numerics is not None:
        _print_numerics(numerics)
    return 0


def _licence_of(spec: str, info: ModelInfo | None) -> str:
    """The ExHuBERT licence only for the published weights (or the hub model that holds them)."""
    from streamser.constants import DEFAULT_MODEL_ID

    if info is not None and info.demo:
        return "-"
    published = info is not None and (
        info.sha256 == PUBLISHED_WEIGHTS_SHA256
        or (info.sha256 is None and info.size_bytes == PUBLISHED_WEIGHTS_BYTES)
    )
    if spec == DEFAULT_MODEL_ID or published:
        return EXHUBERT_LICENCE
    return "unknown: not the published ExHuBERT weights (see the model's own licence)"


def _numerics_of(network: ExHubert) -> NumericsReport:
    from streamser.model.numerics import residual_stream_numerics

    return residual_stream_numerics(network)


def _print_numerics(report: NumericsReport) -> None:
    """Per-layer peak of the residual stream in fp32 and its headroom to fp16's largest value."""
    from streamser.model.numerics import FP16_MAX

    write_out("")
    write_out(f"residual stream, max |h| per layer over {report.windows} fp32 windows")
    write_out(f"(fp16's largest finite value is {FP16_MAX:,.0f}):")
    write_out(f"{'layer':>5}  {'max |h|':>12}  {'headroom':>10}")
    for layer in report.layers:
        mark = "" if layer.max_abs <= FP16_MAX else "  over fp16"
        write_out(f"{layer.index:>5}  {layer.max_abs:>12.4g}  {layer.headroom:>9.3g}x{mark}")
    first = report.first_overflow_layer
    if first is None:
        write_out(f"fits fp16: peak {report.max_abs:.4g}, plain fp16 would stay finite")
    else:
        write_out(
            f"overflows fp16 from layer {first}: plain fp16 would give NaN; "
            "--precision half keeps the residual stream in fp32, and recomputes any non-finite "
            "window in fp32"
        )


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        write_out(f"{key:<{width}}  {value}")


def model_fetch(args: argparse.Namespace) -> int:
    """Download config + weights into the Hugging Face cache, verify them and prepare the copy."""
    from streamser.model.loading import load_network, resolve_source

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
