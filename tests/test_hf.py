"""streamser.hf: ExHuBERT through transformers' own classes gives streamser's numbers.

Everything runs on the tiny fixture checkpoint in the published layout (``model_type: hubert``,
``pytorch_model.bin``); the reference for each number is streamser's own runtime
(``load_model``) or the reference implementation's output stored with the fixture.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AudioClassificationPipeline,
    AutoConfig,
    AutoModelForAudioClassification,
)
from transformers import pipeline as transformers_pipeline

import streamser.hf
from streamser.assets import speech_clip
from streamser.constants import HF_MODEL_TYPE, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from streamser.hf import ExHubertConfig, ExHubertFeatureExtractor, ExHubertForAudioClassification
from streamser.labels import CLASS_NAMES
from streamser.model.errors import ModelError
from streamser.model.runtime import load_model
from streamser.resampling import resample_whole
from tests.conftest import DATA_DIR, ROOT_DIR, require_tools

FIXTURE = DATA_DIR / "tiny-parametrized"
PROB_TOL = 1e-5
REFERENCE_TOL = 1e-4
"""The model specification's criterion for reproducing the reference's inputs and logits."""
CASES = ("full_3s", "short_1_3s", "long_4s_truncated")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """streamser's loader writes a fast-start copy of a ``.bin``: keep it out of the user's."""
    monkeypatch.setenv("STREAMSER_CACHE_DIR", str(tmp_path / "streamser-cache"))


def windows() -> list[np.ndarray]:
    """Three 3 s windows of the bundled speech clip (resampled to 16 kHz) and two synthetic
    ones (a chirp with noise; a quiet noise burst after silence), float32 at 16 kHz."""
    clip = speech_clip()
    assert clip is not None, "assets/speech.wav is part of the source checkout"
    audio, rate = sf.read(clip, dtype="float32", always_2d=True)
    speech = resample_whole(audio.mean(axis=1), rate, SAMPLE_RATE_HZ)
    starts = (0, 3 * SAMPLE_RATE_HZ, int(6.5 * SAMPLE_RATE_HZ))
    cut = [speech[s : s + WINDOW_SAMPLES] for s in starts]
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    rng = np.random.default_rng(7)
    chirp = 0.3 * np.sin(2 * np.pi * (100 + 400 * t) * t) + 0.01 * rng.standard_normal(t.size)
    burst = np.zeros(WINDOW_SAMPLES)
    burst[WINDOW_SAMPLES // 2 :] = 1e-3 * rng.standard_normal(WINDOW_SAMPLES // 2)
    out = [*cut, chirp.astype(np.float32), burst.astype(np.float32)]
    assert all(w.shape == (WINDOW_SAMPLES,) for w in out)
    return out


def streamser_probs(model_dir: Path, audio: list[np.ndarray]) -> np.ndarray:
    """streamser's own runtime on the same windows: (n, 6) probabilities in class order."""
    model = load_model(str(model_dir), compute="cpu", precision="fp32")
    return np.stack([p.probs for p in model.predict_batch(audio, sample_rate=SAMPLE_RATE_HZ)])


def by_class(result: list[dict[str, float | str]]) -> np.ndarray:
    """One pipeline result (``top_k=None``: every class, best first) in streamser's class order."""
    scores = {str(r["label"]): float(r["score"]) for r in result}
    assert set(scores) == set(CLASS_NAMES)
    return np.array([scores[name] for name in CLASS_NAMES])


def run(clf: AudioClassificationPipeline, audio: list[np.ndarray], **kw: object) -> np.ndarray:
    results = clf(audio, top_k=None, **kw)
    return np.stack([by_class(r) for r in results])


def test_pipeline_gives_streamsers_probabilities_and_class_names() -> None:
    audio = windows()
    clf = streamser.hf.pipeline(FIXTURE)
    assert isinstance(clf, AudioClassificationPipeline)
    assert isinstance(clf.model, ExHubertForAudioClassification)
    assert [clf.model.config.id2label[i] for i in range(6)] == list(CLASS_NAMES)
    expected = streamser_probs(FIXTURE, audio)
    # The fixture's classes must differ between windows, or agreement would prove little.
    assert np.ptp(expected, axis=0).max() > 1e-3
    got = run(clf, audio)
    np.testing.assert_allclose(got, expected, atol=PROB_TOL, rtol=0)
    one = by_class(clf(audio[0], top_k=None))
    np.testing.assert_allclose(one, expected[0], atol=PROB_TOL, rtol=0)
    np.testing.assert_allclose(run(clf, audio, batch_size=3), expected, atol=PROB_TOL, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_short_and_long_clips_are_padded_or_cut_like_the_reference(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    with np.load(FIXTURE / "expected.npz") as ref:
        waveform, inputs, logits = (
            ref[f"{case}_{k}"] for k in ("waveform", "input_values", "logits")
        )
    features = ExHubertFeatureExtractor()(waveform, sampling_rate=SAMPLE_RATE_HZ)
    got_inputs = np.asarray(features["input_values"][0])
    assert got_inputs.shape == (WINDOW_SAMPLES,)
    np.testing.assert_allclose(got_inputs, inputs, atol=REFERENCE_TOL, rtol=0)
    clf = streamser.hf.pipeline(FIXTURE)
    caplog.clear()
    with caplog.at_level("WARNING", logger="streamser"):
        got_logits = by_class(clf(waveform, top_k=None, function_to_apply="none"))
        clf(waveform)
    np.testing.assert_allclose(got_logits, logits, atol=REFERENCE_TOL, rtol=0)
    cut = [r for r in caplog.records if "cut to its first 3.00 s" in r.getMessage()]
    assert len(cut) == (1 if waveform.size > WINDOW_SAMPLES else 0)  # said once, and only then


def test_save_pretrained_loads_back_through_the_auto_classes(tmp_path: Path) -> None:
    audio = windows()
    expected = streamser_probs(FIXTURE, audio)
    model = ExHubertForAudioClassification.from_pretrained(FIXTURE)
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    assert json.loads((saved / "config.json").read_text())["model_type"] == HF_MODEL_TYPE

    config = AutoConfig.from_pretrained(saved)
    assert isinstance(config, ExHubertConfig)
    assert [config.id2label[i] for i in range(6)] == list(CLASS_NAMES)
    auto = AutoModelForAudioClassification.from_pretrained(saved)
    assert isinstance(auto, ExHubertForAudioClassification)
    got = run(streamser.hf.pipeline(auto), audio)
    np.testing.assert_allclose(got, expected, atol=PROB_TOL, rtol=0)

    # A saved pipeline (model and feature extractor) is found by transformers alone.
    both = tmp_path / "pipeline"
    streamser.hf.pipeline(saved).save_pretrained(both)
    plain = transformers_pipeline("audio-classification", model=str(both))
    assert isinstance(plain.feature_extractor, ExHubertFeatureExtractor)
    np.testing.assert_allclose(run(plain, audio), expected, atol=PROB_TOL, rtol=0)
    # And streamser's own runtime reads the saved checkpoint too.
    np.testing.assert_allclose(streamser_probs(saved, audio), expected, atol=PROB_TOL, rtol=0)


def published_copy(tmp_path: Path) -> Path:
    d = tmp_path / "published"
    d.mkdir()
    shutil.copy(FIXTURE / "config.json", d / "config.json")
    return d


def test_a_missing_key_is_refused_with_its_name(tmp_path: Path) -> None:
    d = published_copy(tmp_path)
    state = torch.load(FIXTURE / "pytorch_model.bin", weights_only=True)
    dropped = "hubert.encoder.layers.47.gate_bb_linear.weight"
    del state[dropped]
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"1 missing key\(s\): " + dropped.replace(".", r"\.")):
        ExHubertForAudioClassification.from_pretrained(d)
    with pytest.raises(ModelError, match="missing key"):
        streamser.hf.pipeline(d)


def test_an_unexpected_key_is_refused_with_its_name(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    ExHubertForAudioClassification.from_pretrained(FIXTURE).save_pretrained(saved)
    weights = saved / "model.safetensors"
    state = load_file(weights)
    state["hubert.encoder.layers.48.gate_bb_linear.weight"] = torch.zeros(2, 2)
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"1 unexpected key\(s\): hubert\.encoder\.layers\.48"):
        AutoModelForAudioClassification.from_pretrained(saved)


def test_options_that_would_be_ignored_are_refused_and_labels_may_be_renamed() -> None:
    with pytest.raises(ModelError, match="fp32"):
        ExHubertForAudioClassification.from_pretrained(FIXTURE, dtype=torch.float16)
    with pytest.raises(ModelError, match="cache_dir"):
        ExHubertForAudioClassification.from_pretrained(FIXTURE, cache_dir="/elsewhere")
    with pytest.raises(ModelError, match="local_files_only"):
        ExHubertForAudioClassification.from_pretrained(
            "streamser-tests/never-cached", local_files_only=True
        )
    with pytest.raises(ModelError, match="only labels"):
        ExHubertForAudioClassification.from_pretrained(FIXTURE, num_hidden_layers=2)
    names = {i: f"class {i}" for i in range(6)}
    model = ExHubertForAudioClassification.from_pretrained(FIXTURE, id2label=names)
    result = streamser.hf.pipeline(model)(windows()[0], top_k=None)
    assert {r["label"] for r in result} == set(names.values())


def test_a_mask_that_hides_samples_is_refused() -> None:
    model = ExHubertForAudioClassification.from_pretrained(FIXTURE)
    x = torch.from_numpy(windows()[3])[None]
    with torch.no_grad():
        full = model(x, attention_mask=torch.ones_like(x, dtype=torch.long)).logits
        assert torch.equal(full, model(x).logits)
        mask = torch.ones_like(x, dtype=torch.long)
        mask[:, -100:] = 0
        with pytest.raises(ValueError, match="attention mask"):
            model(x, attention_mask=mask)


def test_a_loaded_model_is_trainable_like_any_transformers_model() -> None:
    model = ExHubertForAudioClassification.from_pretrained(FIXTURE)
    x = torch.from_numpy(np.stack(windows()[:2]))
    out = model(x, labels=torch.tensor([0, 5]))
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    first_conv = model.hubert.feature_extractor.conv_layers[0].conv.weight
    for p in (first_conv, model.classifier.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    logits_only = model(x, return_dict=False)
    assert isinstance(logits_only, tuple) and logits_only[0].shape == (2, 6)


def test_a_new_model_from_a_config_has_finite_random_weights() -> None:
    config = AutoConfig.from_pretrained(FIXTURE)  # the published file: a stock HuBERT config
    tiny = ExHubertConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"})
    model = AutoModelForAudioClassification.from_config(tiny)
    assert isinstance(model, ExHubertForAudioClassification)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad():
        logits = model(torch.from_numpy(windows()[0])[None]).logits
    assert logits.shape == (1, 6) and torch.isfinite(logits).all()


def test_a_wav_file_goes_through_transformers_decoding(tmp_path: Path) -> None:
    require_tools("ffmpeg")  # transformers decodes file names with ffmpeg
    audio = windows()[:2]
    path = tmp_path / "two-windows.wav"
    sf.write(path, np.concatenate(audio), SAMPLE_RATE_HZ, subtype="FLOAT")
    clf = streamser.hf.pipeline(FIXTURE)
    got = by_class(clf(str(path), top_k=None))  # 6 s: cut to the first window
    np.testing.assert_allclose(got, streamser_probs(FIXTURE, audio[:1])[0], atol=PROB_TOL, rtol=0)


def test_import_streamser_does_not_import_transformers() -> None:
    def probe(statement: str) -> str:
        code = f"{statement}; import sys; print('transformers' in sys.modules)"
        r = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, timeout=120
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert probe("import streamser") == "False"
    assert probe("import streamser.hf") == "True"  # the probe can see it
