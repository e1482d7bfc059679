"""``streamser tune``: measure each precision path on this machine and store the verdict that
``--precision auto`` then follows."""

from __future__ import annotations

import argparse

from streamser.config import ModelConfig
from streamser.console import write_out
from streamser.settings import build_config

DEFAULT_BUDGET_S = 110.0
"""Measuring stops starting new paths after this long, so a run ends in about two minutes."""


def add_tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"time budget in seconds (default {DEFAULT_BUDGET_S:g}); paths not started by then "
        "are skipped",
    )
    p.add_argument("--windows", type=int, default=2, help="windows timed per path (default 2)")
    p.add_argument("--no-onnx", action="store_true", help="leave onnxruntime out")
    p.add_argument("--no-store", action="store_true", help="print the table only")


def tune(args: argparse.Namespace) -> int:
    from streamser.config import ConfigError
    from streamser.perf.tune import MAX_PROB_DIFF, pick
    from streamser.perf.tune import tune as measure

    cfg = build_config(ModelConfig, vars(args))
    if not (args.budget_s > 0 and args.windows >= 1):
        raise ConfigError("--budget-s must be above 0 and --windows at least 1")
    rows = measure(
        cfg.model,
        windows=args.windows,
        budget_s=args.budget_s,
        onnx=not args.no_onnx,
        store=not args.no_store,
        say=lambda line: write_out(line),
    )
    write_out(f"{'path':<12} {'s/window':>9} {'max |dp| vs fp32':>17} {'others (cores)':>15}  note")
    for r in rows:
        t = f"{r.s_per_window:.3f}" if r.s_per_window is not None else "-"
        d = f"{r.max_abs_prob_diff_vs_fp32:.1e}" if r.max_abs_prob_diff_vs_fp32 is not None else "-"
        o = f"{r.others_cores:.2f}" if r.others_cores is not None else "-"
        write_out(f"{r.path:<12} {t:>9} {d:>17} {o:>15}  {r.note}")
    best = pick(rows)
    stored = "stored: --precision auto now uses it" if not args.no_store else "not stored"
    write_out(f"fastest within {MAX_PROB_DIFF} of fp32: {best} ({stored})")
    return 0
