"""Check and measure the GPU path in under five minutes: ``python benchmarks/gpu_check.py
[OUT.json] [--device cuda|cpu] [--tiny] [--deadline-s 270] [--batches 64,128,256]``.

What it checks and the JSON it writes: :mod:`streamser.perf.gpu_check` (the code lives in the
package, where it is type-checked). ``--device cpu --tiny`` is the CI smoke run. Exit status 0
where every correctness check that ran passed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This checkout's package, not whichever one the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamser.perf.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
