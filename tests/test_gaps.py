"""GapDetector on synthetic capture timelines: holes, jitter, polling and clock drift."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from streamser.audio.gaps import GapDetector

SR = 48_000


@dataclass(frozen=True)
class Timeline:
    """A simulated capture: what the counter says at each moment the detector is updated."""

    duration_s: float
    block_frames: int = 480
    drift_ppm: float = 0.0
    """Positive: the device clock runs slow, delivering fewer frames per wall second."""
    jitter_s: float = 0.0
    """Each block is delivered up to this much after it was captured (uniformly at random)."""
    holes: list[tuple[float, float]] = field(default_factory=list)
    """(start_s, length_s) spans whose captured blocks are lost."""
    poll_s: float | None = None
    """Also update at this period, whether or not a block arrived (as a UI timer would)."""
    seed: int = 0

    def observations(self) -> list[tuple[int, float]]:
        rng = np.random.default_rng(self.seed)
        period_s = self.block_frames / (SR * (1.0 - self.drift_ppm * 1e-6))
        events: list[tuple[float, int]] = []
        total = 0
        last_delivery_s = 0.0
        for i in range(int(self.duration_s / period_s)):
            captured_s = (i + 1) * period_s
            if any(start <= captured_s < start + length for start, length in self.holes):
                continue
            total += self.block_frames
            last_delivery_s = max(last_delivery_s, captured_s + rng.uniform(0, self.jitter_s))
            events.append((last_delivery_s, total))
        if self.poll_s is not None:
            times = np.array([t for t, _ in events])
            totals = np.array([n for _, n in events])
            for poll_s in np.arange(events[0][0], self.duration_s, self.poll_s):
                arrived = np.searchsorted(times, poll_s, side="right")
                events.append((float(poll_s), int(totals[arrived - 1])))
        events.sort()
        return [(n, t) for t, n in events]


def run(detector: GapDetector, timeline: Timeline) -> int:
    """Feed the timeline; return the sum of what each update reported."""
    return sum(detector.update(n, t) for n, t in timeline.observations())


def test_steady_stream_has_no_gaps() -> None:
    det = GapDetector(SR)
    assert run(det, Timeline(duration_s=60.0)) == 0
    assert (det.missing_frames, det.gaps) == (0, 0)


@pytest.mark.parametrize("poll_s", [None, 0.01, 0.1])
def test_one_second_hole_is_counted_once(poll_s: float | None) -> None:
    det = GapDetector(SR)
    reported = run(det, Timeline(duration_s=30.0, holes=[(12.0, 1.0)], poll_s=poll_s))
    assert det.gaps == 1
    assert det.missing_frames == pytest.approx(SR, abs=2 * 480)
    assert reported == det.missing_frames


def test_jitter_within_tolerance_is_not_a_gap() -> None:
    det = GapDetector(SR, tolerance_s=0.25)
    run(det, Timeline(duration_s=120.0, jitter_s=0.2, poll_s=0.05, seed=1))
    assert (det.missing_frames, det.gaps) == (0, 0)


def test_hole_amid_jitter_is_counted_to_within_the_jitter() -> None:
    det = GapDetector(SR, tolerance_s=0.25)
    run(det, Timeline(duration_s=40.0, jitter_s=0.1, holes=[(20.0, 1.0)], seed=2))
    assert det.gaps == 1
    assert det.missing_frames == pytest.approx(SR, abs=0.1 * SR + 480)


def test_separate_holes_are_separate_gaps() -> None:
    det = GapDetector(SR)
    run(det, Timeline(duration_s=40.0, holes=[(5.0, 0.5), (15.0, 2.0), (30.0, 1.0)]))
    assert det.gaps == 3
    assert det.missing_frames == pytest.approx(3.5 * SR, abs=3 * 480)


def test_short_dropout_below_tolerance_is_not_counted() -> None:
    det = GapDetector(SR, tolerance_s=0.25)
    run(det, Timeline(duration_s=20.0, holes=[(10.0, 0.1)]))
    assert det.gaps == 0


@pytest.mark.parametrize("drift_ppm", [-800.0, 300.0, 900.0])
def test_clock_drift_within_the_allowance_never_accumulates(drift_ppm: float) -> None:
    """Two hours at a drift that would reach the tolerance within minutes if it accumulated."""
    det = GapDetector(SR, tolerance_s=0.25, max_drift_ppm=1000.0)
    run(det, Timeline(duration_s=7200.0, block_frames=4800, drift_ppm=drift_ppm, jitter_s=0.02))
    assert (det.missing_frames, det.gaps) == (0, 0)


def test_drift_beyond_the_allowance_takes_the_documented_time_to_look_like_a_gap() -> None:
    drift_ppm, allowance_ppm, tolerance_s = 3000.0, 1000.0, 0.25
    det = GapDetector(SR, tolerance_s=tolerance_s, max_drift_ppm=allowance_ppm)
    first_gap_s = None
    for n, t in Timeline(duration_s=300.0, block_frames=4800, drift_ppm=drift_ppm).observations():
        if det.update(n, t) and first_gap_s is None:
            first_gap_s = t
    expected_s = tolerance_s / ((drift_ppm - allowance_ppm) * 1e-6)  # 125 s
    assert first_gap_s is not None
    assert first_gap_s == pytest.approx(expected_s, rel=0.05)


def test_fast_device_clock_does_not_hide_a_later_hole() -> None:
    det = GapDetector(SR)
    run(det, Timeline(duration_s=600.0, block_frames=4800, drift_ppm=-2000.0, holes=[(500, 1)]))
    assert det.gaps == 1
    assert det.missing_frames == pytest.approx(SR, abs=2 * 4800)


def test_first_update_is_the_origin_and_reset_forgets_everything() -> None:
    det = GapDetector(16_000)
    assert det.update(123_456, 1000.0) == 0  # counters need not start at zero
    assert det.update(123_456 + 16_000, 1001.0) == 0
    assert det.update(123_456 + 16_000, 1003.0) == 32_000
    assert det.deficit_frames == 0.0
    assert (det.missing_frames, det.gaps) == (32_000, 1)
    det.reset()
    assert (det.missing_frames, det.gaps) == (0, 0)
    assert det.update(0, 5000.0) == 0
    assert det.update(16_000, 5001.0) == 0


def test_backwards_counters_or_clock_are_rejected() -> None:
    det = GapDetector(SR)
    det.update(1000, 10.0)
    with pytest.raises(ValueError):
        det.update(999, 11.0)
    with pytest.raises(ValueError):
        det.update(2000, 9.0)
    with pytest.raises(ValueError):
        GapDetector(0)
    with pytest.raises(ValueError):
        GapDetector(SR, tolerance_s=0.0)
