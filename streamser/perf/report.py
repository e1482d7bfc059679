"""The human-readable form of a :func:`streamser.perf.bench.run_bench` report.

The report itself is a plain dict (what ``streamser bench --json`` writes); this module only
turns it into the table and lines ``streamser bench`` prints.
"""

from __future__ import annotations

from typing import Any

DISTURBED_CORES = 0.2
"""Other processes' load (in cores) from which the report warns that timings are disturbed."""


def _gb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def _header(r: dict[str, Any]) -> list[str]:
    m, model, peak, load = r["machine"], r["model"], r["peak"], r["load"]
    device = m.get("gpu") or f"{m['cpu']} ({m['logical_cpus']} logical CPUs, "
    device += "" if m.get("gpu") else f"{m['physical_cores']} physical cores)"
    peak_line = f"device peak: {peak['gflop_per_s']:.1f} GFLOP/s ({peak['method']})"
    if m["device"] == "cuda":
        peak_line += f"; fp32 (TF32 off) {peak['fp32_gflop_per_s']:.1f} GFLOP/s"
        sheet = peak.get("datasheet_fp16_tflops")
        peak_line += (
            f"; datasheet ({peak['datasheet_entry']}) fp16 dense {sheet:.0f} TFLOP/s"
            if sheet
            else f"; datasheet: unknown for {peak.get('gpu_name', m.get('gpu'))!r}"
        )
    mem = "peak GPU memory" if m["device"] == "cuda" else "peak RSS"
    return [
        f"machine: {device}; {_gib(m['memory_bytes'])} RAM; torch "
        f"{m['torch']}, {m['torch_threads']} threads, {m['cpu_capability']}; "
        f"load average {m['load_average_1m']:.2f} at start",
        f"model: {model['name']}, {model['layers']} layers, hidden {model['hidden_size']}, "
        f"{model['n_params']:,} parameters, {model['gflop_per_window']:.2f} GFLOP per window"
        + (" [--quick: tiny architecture]" if r["quick"] else ""),
        peak_line,
        f"to first estimate: {load['to_first_estimate_s']:.2f} s (build/load "
        f"{load['build_s']:.2f} s + first forward {load['first_forward_s']:.2f} s), "
        f"{mem} {_gb(load['peak_memory_bytes'])}",
    ]


def _table(r: dict[str, Any]) -> list[str]:
    w = max([28, *(len(t["path"]) for t in r["timings"])])
    cols = (
        f"{'path':<{w}} {'batch':>5} {'median s':>9} {'p95 s':>8} {'s/window':>9} "
        f"{'windows/s':>10} {'GFLOP/s':>8} {'of peak':>8} {'peak mem':>9} {'others':>7}"
    )
    lines = [cols, "-" * len(cols)]
    for t in r["timings"]:
        others = t["other_load_cores"]
        lines.append(
            f"{t['path']:<{w}} {t['batch']:>5} {t['forward_median_s']:>9.3f} "
            f"{t['forward_p95_s']:>8.3f} {t['s_per_window']:>9.3f} {t['windows_per_s']:>10.2f} "
            f"{t['achieved_gflop_per_s']:>8.1f} {t['fraction_of_peak']:>8.1%} "
            f"{_gb(t['peak_memory_bytes']):>9} "
            f"{'-' if others is None else f'{others:.2f}':>7}"
        )
    ref = r["reference_cpu"]
    if r["machine"]["device"] == "cpu" and not r["quick"]:
        for b, s in ref["s_per_window"].items():
            lines.append(
                f"{'published reference code':<{w}} {b:>5} {'':>9} {'':>8} {s:>9.3f} "
                f"{1 / s:>10.2f} {r['model']['gflop_per_window'] / s:>8.1f} {'':>8} "
                f"{_gb(ref['peak_rss_bytes']):>9} {'':>7}"
            )
        lines.append(f"  (reference: {ref['what']}; measured earlier on {ref['machine']})")
    lines.append(
        "  others = CPU cores kept busy by other processes meanwhile (0 = undisturbed); "
        "p95 of few repeats is near their maximum"
    )
    busiest = max((t["other_load_cores"] or 0.0 for t in r["timings"]), default=0.0)
    if busiest >= DISTURBED_CORES:
        lines.append(
            f"  WARNING: other processes kept up to {busiest:.1f} cores busy during these "
            "timings; with every core in use by the model that can slow it several-fold. "
            "Rerun on an idle machine for figures to compare."
        )
    return lines


def _precisions(r: dict[str, Any]) -> list[str]:
    p = r.get("precisions") or {}
    rows = p.get("rows") or []
    if not rows:
        return []
    w = max([16, *(len(row["precision"]) for row in rows)])
    cols = (
        f"{'precision':<{w}} {'batch':>5} {'s/window':>9} {'windows/s':>10} "
        f"{'max |prob diff| vs fp32':>24} {'half fallbacks':>15}"
    )
    lines = [cols, "-" * len(cols)]
    for row in sorted(rows, key=lambda row: row["batch"]):
        if row["s_per_window"] is None:
            lines.append(f"{row['precision']:<{w}} {row['batch']:>5}  {row['note']}")
            continue
        fallbacks = row["half_fallbacks"]
        lines.append(
            f"{row['precision']:<{w}} {row['batch']:>5} {row['s_per_window']:>9.4f} "
            f"{row['windows_per_s']:>10.2f} {row['max_abs_prob_diff_vs_fp32']:>24.2e} "
            f"{'-' if fallbacks is None else fallbacks:>15}"
            + (f"  ({row['note']})" if row["note"] else "")
        )
    probe = p.get("bf16_probe")
    if probe:
        rates = probe["gflop_per_s"]
        lines.append(
            f"  bf16 probe ({probe['shape']} GEMM): bf16 {rates['bfloat16']:.1f}, fp32 "
            f"{rates['float32']:.1f} GFLOP/s"
        )
    lines.append(
        "  prob diff: against the fp32 row of the same batch, same weights and inputs; "
        "half fallbacks: windows the half guard recomputed in fp32"
    )
    return lines


def _extras(r: dict[str, Any]) -> list[str]:
    lines = []
    for c in r["baseline_comparison"]:
        lines.append(
            f"batch {c['batch']}: optimised is {c['speedup']:.2f}x the eager fp32 baseline; "
            f"max |logit diff| {c['max_abs_logit_diff']:.2e}, "
            f"max |prob diff| {c['max_abs_prob_diff']:.2e}"
        )
    if r["int8"]:
        for row in r["int8"]["random_model"]:
            lines.append(
                f"int8 vs fp32, batch {row['batch']} (random weights): max |prob diff| "
                f"{row['max_abs_prob_diff_vs_fp32']:.2e}, max |logit diff| "
                f"{row['max_abs_logit_diff_vs_fp32']:.2e}"
            )
        lines.extend(_fixture_line("int8", r["int8"]["fixture"]))
    if r.get("onnxruntime"):
        o = r["onnxruntime"]
        lines.append(
            f"onnxruntime {o['onnxruntime']} ({o['threads']} threads): export "
            f"{o['export_s']:.1f} s (peak {_gb(o['export_peak_memory_bytes'])}), "
            f"session {o['session_s']:.1f} s"
        )
        for row in o["rows"]:
            ratio = row.get("speedup_vs_torch_alternated")
            lines.append(
                f"onnxruntime vs torch, batch {row['batch']}: "
                + (f"{ratio:.2f}x (alternated run by run); " if ratio else "")
                + f"max |logit diff| {row['max_abs_logit_diff_vs_torch']:.2e}, "
                f"max |prob diff| {row['max_abs_prob_diff_vs_torch']:.2e}"
            )
    if r["gpu"]:
        cap = r["gpu"]["cuda_graph_capture"]
        if cap:
            lines.append(
                f"CUDA graphs: buckets {cap['buckets']} captured in {cap['capture_s']:.1f} s; "
                f"pool reserved {_gb(cap['pool_reserved_bytes'])}, peak allocated "
                f"{_gb(cap['peak_memory_bytes'])}"
            )
        for g in r["gpu"]["cuda_graphs"]:
            lines.append(
                f"CUDA graph vs eager fp16, batch {g['batch']}: max |logit diff| "
                f"{g['max_abs_logit_diff_vs_eager']:.2e}, fp16 fallbacks {g['half_fallbacks']}"
            )
        lines.extend(_fixture_line("fp16", r["gpu"]["fixture_fp16_vs_fp32"]))
    return lines


def _fixture_line(what: str, f: dict[str, Any] | None) -> list[str]:
    if f is None:
        return [f"{what} on the fixture: not available (no source checkout)"]
    return [
        f"{what} vs fp32 on the fixture {f['fixture']}: max |prob diff| "
        f"{f['max_abs_prob_diff_vs_fp32']:.2e}, max |logit diff| "
        f"{f['max_abs_logit_diff_vs_fp32']:.2e} (fp32 vs reference logits "
        f"{f['max_abs_logit_diff_fp32_vs_reference']:.1e})"
    ]


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of a :func:`streamser.perf.bench.run_bench` report."""
    precisions = _precisions(r)
    sections = [*_header(r), "", *_table(r), ""]
    if precisions:
        sections += [*precisions, ""]
    return "\n".join([*sections, *_extras(r)]).rstrip()
