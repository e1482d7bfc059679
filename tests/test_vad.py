"""Speech gate: frame alignment, determinism across block sizes, real speech, bounded history."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import ROOT_DIR, require_tools

from streamser.audio.vad import SpeechDetector, is_speech
from streamser.constants import SAMPLE_RATE_HZ

FRAME = SpeechDetector.FRAME_SAMPLES


class FirstSampleModel:
    """Test double: a chunk's speech probability is its first sample, so tests dictate it."""

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []
        self.resets = 0

    def __call__(self, x: torch.Tensor, sr: int) -> torch.Tensor:
        assert sr == SAMPLE_RATE_HZ
        assert tuple(x.shape) == (1, FRAME)
        self.chunks.append(x.clone())
        return x[:, :1]

    def reset_states(self) -> None:
        self.resets += 1


def frames(*probs: float) -> np.ndarray:
    """A stream whose frames carry the given probabilities for :class:`FirstSampleModel`."""
    return np.repeat(np.asarray(probs, dtype=np.float32), FRAME)


def push_in_blocks(det: SpeechDetector, stream: np.ndarray, sizes: list[int]) -> None:
    pos, k = 0, 0
    while pos < stream.size:
        n = sizes[k % len(sizes)]
        det.push(stream[pos : pos + n])
        pos += n
        k += 1


def voiced_test_signal(seconds: float) -> np.ndarray:
    """Noise with harmonic bursts: enough structure for the model to vary its output."""
    rng = np.random.default_rng(7)
    n = int(seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    voice = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12))
    gate = (np.sin(2 * np.pi * 1.5 * t) > 0).astype(np.float64)
    return (0.3 * voice * gate + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_same_stream_in_any_block_sizes_gives_identical_probabilities() -> None:
    stream = voiced_test_signal(2.0)
    det = SpeechDetector()
    det.push(stream)
    reference = det.probabilities()
    assert reference.size == stream.size // FRAME
    assert reference.max() - reference.min() > 0.1, "signal too bland to test determinism"

    for sizes in ([1, 7, 511, 513, 4000], [FRAME], [160, 1600, 33], [stream.size]):
        det.reset()
        push_in_blocks(det, stream, sizes)
        assert det.frames_processed == reference.size
        assert det.samples_pushed == stream.size
        np.testing.assert_array_equal(det.probabilities(), reference)


def test_frames_follow_the_stream_clock_and_partial_frame_waits() -> None:
    model = FirstSampleModel()
    det = SpeechDetector(model=model)
    det.push(frames(0.9)[:300])
    assert det.frames_processed == 0
    assert det.samples_pushed == 300
    det.push(np.concatenate([frames(0.9)[300:], frames(0.2)[:100]]))
    assert det.frames_processed == 1
    assert det.samples_pushed == FRAME + 100
    assert float(model.chunks[0][0, 0]) == pytest.approx(0.9)
    assert torch.all(model.chunks[0] == model.chunks[0][0, 0])


def test_partial_frames_count_by_overlap() -> None:
    det = SpeechDetector(frame_threshold=0.5, model=FirstSampleModel())
    det.push(frames(0.9, 0.1, 0.9, 0.1))
    assert det.speech_fraction(0, 4 * FRAME) == pytest.approx(0.5)
    assert det.speech_fraction(0, FRAME) == pytest.approx(1.0)
    assert det.speech_fraction(FRAME, 2 * FRAME) == pytest.approx(0.0)
    # Three quarters of frame 0; frame 1 ends after the span, so it does not count.
    assert det.speech_fraction(FRAME // 4, FRAME + FRAME // 4) == pytest.approx(1.0)
    # Half of frame 1 (non-speech) and all of frame 2 (speech); frame 3 ends after the span.
    assert det.speech_fraction(FRAME + FRAME // 2, 3 * FRAME + FRAME // 2) == pytest.approx(2 / 3)
    # Frames not scored yet do not count: only frame 3 (non-speech) lies inside.
    assert det.speech_fraction(3 * FRAME, 10 * FRAME) == pytest.approx(0.0)
    assert det.speech_fraction(2 * FRAME, 10 * FRAME) == pytest.approx(0.5)


def test_fraction_is_zero_when_no_frame_is_known() -> None:
    det = SpeechDetector(model=FirstSampleModel())
    assert det.speech_fraction(0, 48_000) == 0.0
    det.push(frames(0.9, 0.9))
    assert det.speech_fraction(5 * FRAME, 8 * FRAME) == 0.0
    assert det.speech_fraction(FRAME, FRAME) == 0.0
    assert det.speech_fraction(FRAME, 0) == 0.0


def test_threshold_is_inclusive() -> None:
    det = SpeechDetector(frame_threshold=0.5, model=FirstSampleModel())
    det.push(frames(0.5, 0.49))
    assert det.speech_fraction(0, FRAME) == 1.0
    assert det.speech_fraction(FRAME, 2 * FRAME) == 0.0
    assert is_speech(0.3, 0.3)
    assert not is_speech(0.29, 0.3)


def test_history_is_bounded_and_evictions_counted() -> None:
    history_s = 10 * FRAME / SAMPLE_RATE_HZ
    det = SpeechDetector(history_s=history_s, model=FirstSampleModel())
    assert det.history_frames == 10
    det.push(frames(*([0.9] * 4 + [0.1] * 10)))
    assert det.frames_processed == 14
    assert det.frames_evicted == 4
    assert det.first_retained_frame == 4
    assert det.probabilities().size == 10
    np.testing.assert_allclose(det.probabilities(), 0.1)
    # The evicted speech frames no longer count; the span is judged on what is retained.
    assert det.speech_fraction(0, 4 * FRAME) == 0.0
    assert det.speech_fraction(0, 14 * FRAME) == 0.0


def test_reset_restarts_clock_history_and_model() -> None:
    model = FirstSampleModel()
    det = SpeechDetector(history_s=4 * FRAME / SAMPLE_RATE_HZ, model=model)
    resets_at_start = model.resets
    det.push(frames(0.9, 0.9, 0.9, 0.9, 0.9, 0.9)[:-10])
    det.reset()
    assert model.resets == resets_at_start + 1
    assert (det.frames_processed, det.frames_evicted, det.samples_pushed) == (0, 0, 0)
    assert det.probabilities().size == 0
    det.push(frames(0.1))
    assert det.speech_fraction(0, FRAME) == 0.0


def test_nonfinite_samples_are_zeroed_and_counted() -> None:
    model = FirstSampleModel()
    det = SpeechDetector(model=model)
    block = frames(0.9)
    block[0] = np.nan
    block[5] = np.inf
    det.push(block)
    assert det.nonfinite_samples == 2
    assert torch.isfinite(model.chunks[0]).all()
    assert float(model.chunks[0][0, 0]) == 0.0


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        SpeechDetector(frame_threshold=1.5, model=FirstSampleModel())
    with pytest.raises(ValueError):
        SpeechDetector(history_s=0.0, model=FirstSampleModel())
    det = SpeechDetector(model=FirstSampleModel())
    with pytest.raises(ValueError):
        det.push(np.zeros((FRAME, 2), dtype=np.float32))


def test_espeak_utterance_is_speech_and_padding_is_not(tmp_path: Path) -> None:
    require_tools("espeak-ng")
    wav = tmp_path / "utterance.wav"
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32", always_2d=False)
    speech = soxr.resample(audio, rate, SAMPLE_RATE_HZ).astype(np.float32)
    silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    noise = (1e-3 * np.random.default_rng(3).standard_normal(SAMPLE_RATE_HZ)).astype(np.float32)
    stream = np.concatenate([silence, speech, noise])

    det = SpeechDetector()
    push_in_blocks(det, stream, [1600])
    start, end = silence.size, silence.size + speech.size
    assert det.speech_fraction(start, end) > 0.7
    assert det.speech_fraction(0, start) < 0.05
    # Leave 0.25 s for the model's release after the last word.
    assert det.speech_fraction(end + SAMPLE_RATE_HZ // 4, stream.size) < 0.05


def test_loading_leaves_thread_count_and_emits_no_deprecation_warning() -> None:
    script = textwrap.dedent(
        """
        import warnings
        import torch
        torch.set_num_threads(3)
        warnings.simplefilter("error", DeprecationWarning)
        from streamser.audio.vad import load_silero_model
        load_silero_model()
        assert torch.get_num_threads() == 3, torch.get_num_threads()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT_DIR, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_gate_scores_on_one_torch_thread_and_gives_the_count_back() -> None:
    """A spinning OpenMP team on the gate's thread would slow the model's thread: the gate's
    frames are scored with one thread, and the caller's count is back afterwards."""

    from streamser.audio.vad import one_torch_thread

    seen: list[int] = []

    class Counting:
        def __call__(self, x: torch.Tensor, sr: int) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return torch.zeros(1)

        def reset_states(self) -> None:
            pass

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        SpeechDetector(model=Counting()).push(np.zeros(2048, dtype=np.float32))
        assert seen == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
