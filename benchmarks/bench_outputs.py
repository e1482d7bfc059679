"""Live outputs' cost per estimate: what ``--lsl`` and ``--osc`` add to the inference thread.

Both outputs run inside ``ResultBus.publish`` (a callback subscription), on the thread that
computes the estimates, so their cost per estimate is what the analysis pays. Measured here: the
wall and CPU time of ``LiveOutputs.publish`` for one estimate (the eleven values, the derived
events, the dating), per case:

- none: no output at all (the fan-out's own cost);
- lsl, no consumer: outlets up, nobody connected (liblsl queues nothing);
- lsl, consumer: a pylsl inlet in this process is connected and pulls on a thread;
- osc, receiver: a UDP socket on 127.0.0.1 that reads every datagram on a thread;
- osc, nobody: the target port is closed (every other send fails with ECONNREFUSED, counted);
- lsl + osc: both, with their consumers.

Estimates alternate between speech and silence every few windows, so speech markers are sent
too (about one estimate in four carries one). Everything stays on this machine: LSL reads
``tests/lsl_api.cfg`` unless ``LSLAPICFG`` is already set. Figures are printed, never asserted.

Run: ``.venv/bin/python benchmarks/bench_outputs.py [--n 5000]`` (about 20 s).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LSLAPICFG", str(ROOT / "tests" / "lsl_api.cfg"))

from streamser.contracts import Estimate  # noqa: E402
from streamser.outputs.clocks import LiveClock  # noqa: E402
from streamser.outputs.live import LiveOutputConfig, LiveOutputs  # noqa: E402
from streamser.outputs.lsl import import_pylsl, source_id  # noqa: E402
from streamser.outputs.osc import parse_osc_target  # noqa: E402
from streamser.outputs.run_facts import RunFacts  # noqa: E402

INPUT = "bench_outputs"
FACTS = RunFacts.from_description(
    {
        "audio": {"source": INPUT, "kind": "ArraySource"},
        "model": {"name": "demo", "demo": True},
        "compute": {"precision": "fp32"},
        "config": {"windows": {"window_s": 3.0, "hop_s": 1.0}},
    }
)


def estimate(seq: int) -> Estimate:
    speech = (seq // 4) % 2 == 0
    probs = (0.1, 0.2, 0.3, 0.15, 0.15, 0.1)
    return Estimate(
        seq=seq,
        window=seq,
        t_start_s=float(seq),
        t_end_s=seq + 3.0,
        wall_time="2024-05-01T10:00:00+00:00",
        probs=probs if speech else None,
        arousal=0.4 if speech else None,
        valence=0.1 if speech else None,
        arousal_smooth=0.4,
        valence_smooth=0.1,
        speech=0.9 if speech else 0.1,
        is_speech=speech,
        compute_s=0.05,
        latency_s=0.1,
        skipped_windows=0,
        dropped_samples=0,
    )


class UdpReader:
    """A plain loopback UDP socket that reads (and counts) every datagram on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65536)
            except TimeoutError:
                continue
            self.received += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class LslPuller:
    """A pylsl inlet on the affect stream, pulling on a thread."""

    def __init__(self) -> None:
        pylsl = import_pylsl()
        found = pylsl.resolve_byprop("source_id", source_id(FACTS.input_name, "main"), timeout=10)
        self.inlet = pylsl.StreamInlet(found[0])
        self.inlet.open_stream(timeout=10)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            chunk, _ = self.inlet.pull_chunk(timeout=0.2)
            self.received += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(
    name: str, cfg: LiveOutputConfig, n: int, consumers: Callable[[], list[object]]
) -> None:
    outputs = LiveOutputs.open(cfg, FACTS, LiveClock(), wait_s=0.0)
    attached = consumers()
    for seq in range(200):  # warm-up: connections settle, code paths warm
        outputs.publish(estimate(seq))
    wall: list[float] = []
    cpu: list[float] = []
    for seq in range(200, 200 + n):
        est = estimate(seq)
        t0, c0 = time.perf_counter(), time.thread_time()
        outputs.publish(est)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    counters = outputs.close()
    for c in attached:
        c.close()  # type: ignore[attr-defined]
    wall_us = sorted(w * 1e6 for w in wall)
    p95 = wall_us[int(0.95 * len(wall_us))]
    print(
        f"{name:<18} wall median {statistics.median(wall_us):7.1f} us  p95 {p95:7.1f} us  "
        f"max {wall_us[-1]:8.1f} us  cpu mean {statistics.fmean(cpu) * 1e6:6.1f} us  {counters}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="estimates per case (default 5000)")
    n = parser.parse_args().n
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs, n={n}")
    measure("none", LiveOutputConfig(), n, list)
    measure("lsl, no consumer", LiveOutputConfig(lsl=True), n, list)
    measure("lsl, consumer", LiveOutputConfig(lsl=True), n, lambda: [LslPuller()])
    reader = UdpReader()
    measure("osc, receiver", LiveOutputConfig(osc=parse_osc_target(f"127.0.0.1:{reader.port}")),
            n, lambda: [])  # fmt: skip
    print(f"{'':<18} (the receiver read {reader.received} datagrams)")
    reader.close()
    port = closed_port()
    measure("osc, nobody", LiveOutputConfig(osc=parse_osc_target(f"127.0.0.1:{port}")), n, list)
    reader = UdpReader()
    both = LiveOutputConfig(lsl=True, osc=parse_osc_target(f"127.0.0.1:{reader.port}"))
    measure("lsl + osc", both, n, lambda: [LslPuller()])
    reader.close()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
