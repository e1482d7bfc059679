"""Load test of ``streamser serve``: N concurrent live clients streaming speech in real time.

For each N in ``--clients``, N clients each stream assets/speech.wav (looped) in real time, in
``--block-s`` messages, for ``--duration-s`` seconds; their starts are spread over one hop, as
independent microphones would be. Printed per N:

- latency p50 / p95 / max, seen by the clients: from sending the message that held a window's
  last sample to receiving its estimate (loopback, so the network adds little);
- estimates per second over all clients, and the windows skipped (newest wins) and refused;
- the shared model's batch sizes in that step (from /metrics, by histogram bucket);
- the server process's CPU (cores used: CPU seconds / wall seconds) and resident memory, read
  from /proc (Linux).

By default the script starts the server itself (``streamser serve --port 0`` with ``--model``,
as a subprocess on loopback; ``--max-streams`` is the largest N); ``--url`` measures a running
server instead (then CPU and memory only if ``--server-pid`` is given). The clients run in this
process, on one event loop: on a small machine they take CPU from the server too (the load
generator's own CPU is printed), so the largest N it sustains is a lower bound.

Run: ``.venv/bin/python benchmarks/load.py --model demo --clients 1,2,4,8,16,32,64``. On a GPU
machine: ``--model amiriparian/ExHuBERT --max-batch 32 --clients 8,16,32,64,128,256``.
Figures are printed (and with ``--json OUT`` written), never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "assets" / "speech.wav"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ClientResult:
    latencies_s: list[float] = field(default_factory=list)
    estimates: int = 0
    skipped: int = 0
    refused: bool = False
    error: str | None = None


async def client(url: str, audio: np.ndarray, rate: int, args: argparse.Namespace,
                 delay_s: float) -> ClientResult:  # fmt: skip
    result = ClientResult()
    await asyncio.sleep(delay_s)  # spread the starts over one hop: independent microphones
    hello: dict[str, Any] = {
        "type": "hello", "protocol": 1, "sample_rate_hz": rate, "channels": 1,
        "format": "float32", "mode": "live", "hop_s": args.hop, "vad": not args.no_vad,
    }  # fmt: skip
    if args.token:
        hello["token"] = args.token
    block = max(1, round(args.block_s * rate))
    sent_end: list[tuple[int, float]] = []  # (frames sent so far, when)
    try:
        async with connect(url, max_size=None, compression=None) as ws:
            await ws.send(json.dumps(hello))
            ready = json.loads(await ws.recv())
            if ready["type"] != "ready":
                result.refused = ready["type"] == "busy"
                result.error = ready.get("message")
                return result

            async def read() -> None:
                async for text in ws:
                    m = json.loads(text)
                    if m["type"] != "estimate":
                        continue
                    now = time.monotonic()
                    end_frame = m["t_end_s"] * rate
                    at = next((t for frames, t in sent_end if frames >= end_frame), None)
                    if at is not None:
                        result.latencies_s.append(now - at)
                    result.estimates += 1
                    result.skipped = m["skipped_windows"]

            reader = asyncio.ensure_future(read())
            start, frames = time.monotonic(), 0
            n_blocks = int(args.duration_s / args.block_s)
            for k in range(n_blocks):
                first = (k * block) % (len(audio) - block)
                due = start + (frames + block) / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await ws.send(audio[first : first + block].tobytes())
                frames += block
                sent_end.append((frames, time.monotonic()))
            # The last windows: wait one compute round for them, then leave.
            await asyncio.sleep(min(5.0, 2 * args.hop))
            await ws.close()
            await asyncio.gather(reader, return_exceptions=True)
    except (ConnectionClosed, OSError) as e:
        result.error = f"{type(e).__name__}: {e}"
    return result


def metrics(url: str) -> dict[str, float]:
    page = url.replace("ws://", "http://").replace("wss://", "https://").replace("/v1/stream", "")
    with urlopen(page + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def batch_distribution(before: dict[str, float], after: dict[str, float]) -> str:
    """Batches in this step per bucket of the batch-size histogram, e.g. ``1:40 2:12 3-4:3``."""
    parts, lower, prev = [], 1, 0.0
    for name in sorted(
        (k for k in after if k.startswith("streamser_batch_size_bucket") and "+Inf" not in k),
        key=lambda k: float(re.search(r'le="([^"]+)"', k).group(1)),  # type: ignore[union-attr]
    ):
        le = int(float(re.search(r'le="([^"]+)"', name).group(1)))  # type: ignore[union-attr]
        cumulative = after[name] - before.get(name, 0.0)
        if cumulative - prev:
            label = str(le) if le == lower else f"{lower}-{le}"
            parts.append(f"{label}:{int(cumulative - prev)}")
        prev, lower = cumulative, le + 1
    return " ".join(parts) or "-"


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmHWM), in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def start_server(args: argparse.Namespace, max_streams: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "streamser", "serve", "--model", args.model, "--port", "0",
           "--max-streams", str(max_streams), "--max-batch", str(args.max_batch)]  # fmt: skip
    if args.compute:
        cmd += ["--compute", args.compute]
    if args.precision:
        cmd += ["--precision", args.precision]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        if "serving on" in line:
            return proc, line.split("serving on ")[1].split()[0]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


async def step(url: str, n: int, audio: np.ndarray, rate: int, args: argparse.Namespace,
               pid: int | None) -> dict[str, Any]:  # fmt: skip
    before = metrics(url)
    cpu0 = proc_cpu_s(pid) if pid else None
    me0, t0 = time.process_time(), time.monotonic()
    results = await asyncio.gather(
        *(client(url, audio, rate, args, random.uniform(0, args.hop)) for _ in range(n))
    )
    wall = time.monotonic() - t0
    after = metrics(url)
    lat = np.array([x for r in results for x in r.latencies_s])
    row: dict[str, Any] = {
        "clients": n,
        "estimates": int(sum(r.estimates for r in results)),
        "windows_per_s": round(
            (after["streamser_windows_total"] - before["streamser_windows_total"]) / wall, 2
        ),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
        "latency_max_s": round(float(lat.max()), 3) if lat.size else None,
        "skipped": int(sum(r.skipped for r in results)),
        "refused": int(sum(r.refused for r in results)),
        "errors": [r.error for r in results if r.error and not r.refused][:3],
        "batches": batch_distribution(before, after),
        "load_generator_cores": round((time.process_time() - me0) / wall, 2),
        "wall_s": round(wall, 1),
    }
    if pid:
        assert cpu0 is not None
        rss, peak = proc_rss_mib(pid)
        row |= {
            "server_cores": round((proc_cpu_s(pid) - cpu0) / wall, 2),
            "server_rss_mib": round(rss),
            "server_peak_rss_mib": round(peak),
        }
    return row


def print_row(r: dict[str, Any]) -> None:
    print(
        f"{r['clients']:>4} clients: latency p50/p95/max {r['latency_p50_s']}/"
        f"{r['latency_p95_s']}/{r['latency_max_s']} s, {r['windows_per_s']} windows/s, "
        f"{r['estimates']} estimates, {r['skipped']} skipped, {r['refused']} refused; "
        f"batches {r['batches']}; server {r.get('server_cores', '?')} cores, "
        f"{r.get('server_rss_mib', '?')} MiB (peak {r.get('server_peak_rss_mib', '?')}); "
        f"load generator {r['load_generator_cores']} cores"
        + (f"; errors {r['errors']}" if r["errors"] else ""),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server's stream URL (default: start one)")
    p.add_argument("--server-pid", type=int, help="with --url: its pid, for CPU and memory")
    p.add_argument("--model", default="demo", help="model for the server started here")
    p.add_argument("--compute", help="--compute for the server started here")
    p.add_argument("--precision", help="--precision for the server started here")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--clients", default="1,2,4,8,16,32,64", help="N list, comma-separated")
    p.add_argument("--hop", type=float, default=1.0)
    p.add_argument("--duration-s", type=float, default=20.0, help="streaming time per step")
    p.add_argument("--block-s", type=float, default=0.1, help="audio per message")
    p.add_argument("--no-vad", action="store_true", help="clients ask for no speech gate")
    p.add_argument("--token", default=os.environ.get("STREAMSER_TOKEN"))
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    audio, rate = sf.read(SPEECH, dtype="float32")
    proc = None
    url, pid = args.url, args.server_pid
    if url is None:
        proc, url = start_server(args, max(counts))
        pid = proc.pid
    print(f"load: {url}, model {args.model}, hop {args.hop} s, {args.duration_s:g} s per step, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    rows = []
    try:
        for n in counts:
            row = asyncio.run(step(url, n, audio, rate, args, pid))
            row["load_average_1m"] = round(os.getloadavg()[0], 2)
            print_row(row)
            rows.append(row)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    ok = [r["clients"] for r in rows if r["latency_p95_s"] is not None and r["latency_p95_s"] <= 1.0
          and not r["refused"]]  # fmt: skip
    print(f"largest N with latency p95 <= 1 s: {max(ok) if ok else 'none'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
