"""Regenerate ``assets/dashboard.svg``: a real capture of the dashboard, not a mock-up.

It runs what ``streamser demo`` runs when the ExHuBERT weights are not cached: the demo model
(random weights, so the trajectories mean nothing, as its banner says) on the bundled speech
clip, analysed as fast as possible, shown in the real dashboard at 120x36 cells with the 30 s
range, and saved once every window is on screen. Run it from the repository's root:

    .venv/bin/python assets/make_dashboard.py [OUT.svg]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from streamser.audio.replay import FileSource
from streamser.config import AudioConfig, ListenConfig, LogConfig, ModelConfig
from streamser.engine.pipeline import Pipeline
from streamser.model import load_model
from streamser.tui.app import make_app

HERE = Path(__file__).parent
SIZE = (120, 36)


async def capture(out: Path) -> None:
    clip = Path("assets/speech.wav")  # relative, as a user in a checkout would type it
    cfg = ListenConfig(
        model=ModelConfig(model="demo", compute="cpu"),
        audio=AudioConfig(input_path=str(clip), fast=True),
        logging=LogConfig(log=False),
    ).validate()
    pipeline = Pipeline(cfg, load_model("demo", compute="cpu"), FileSource(clip, realtime=False))
    app = make_app(pipeline, title="streamser demo")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("minus")  # the 30 s range: the clip is 13.7 s long
        while not pipeline.status().finished:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        app.draw_frame()
        app.poll_status()
        await pilot.pause()
        app.save_screenshot(filename=out.name, path=str(out.parent))
    print(f"wrote {out} ({app.received} estimates)")


if __name__ == "__main__":
    asyncio.run(capture(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dashboard.svg"))
