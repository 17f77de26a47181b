"""The SC09 digit classifier learns: a separable toy set in the Speech Commands layout (one tone
pattern per "digit", random phase, gain and position) is classified perfectly after a short run; the
step/time schedule anneals; augmentation keeps shapes and is reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mambabench.data.audio import SC09_WORDS
from mambabench.eval.sc09_classifier import augment, load_classifier, train_classifier, warmup_cosine

RATE, LENGTH = 16000, 1600


pytestmark = pytest.mark.usefixtures("one_thread")


def _toy_sc09(root: Path, per_split: dict[str, int]) -> None:
    """Ten "words": a tone whose frequency is the digit's (300 Hz + 250 Hz x label), in noise."""
    rng = np.random.default_rng(0)
    t = np.arange(LENGTH) / RATE
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for label, word in enumerate(SC09_WORDS):
        (root / word).mkdir(parents=True)
        for split, count in per_split.items():
            for take in range(count):
                tone = np.sin(2 * np.pi * (300 + 250 * label) * t + rng.uniform(0, 2 * np.pi))
                envelope = (np.abs(t - rng.uniform(0.03, 0.07)) < 0.025).astype(float)
                wave = rng.uniform(0.2, 0.6) * tone * envelope + 0.005 * rng.standard_normal(LENGTH)
                rel = f"{word}/{split}{take}_nohash_0.wav"
                sf.write(root / rel, wave.astype(np.float32), RATE)
                if split != "train":
                    lists[split].append(rel)
    (root / "validation_list.txt").write_text("\n".join(lists["validation"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")


def test_classifier_learns_a_separable_set(tmp_path: Path) -> None:
    root = tmp_path / "sc09"
    _toy_sc09(root, {"train": 6, "validation": 2, "test": 2})
    out = tmp_path / "classifier.pt"
    summary = train_classifier(
        root, out, steps=80, batch_size=20, lr=5e-3, width=4, length=LENGTH, eval_every=40
    )
    assert summary["steps"] == 80 and [h["step"] for h in summary["history"]] == [40, 80]
    assert summary["test_accuracy"] >= 0.9 and summary["val_accuracy"] >= 0.9
    assert out.with_suffix(".json").exists()
    model = load_classifier(out)
    assert model(torch.zeros(2, LENGTH)).shape == (2, 10)


def test_time_limit_ends_training_with_an_annealed_schedule(tmp_path: Path) -> None:
    root = tmp_path / "sc09"
    _toy_sc09(root, {"train": 1, "validation": 1, "test": 1})
    summary = train_classifier(
        root, tmp_path / "c.pt", steps=10**6, batch_size=5, width=4, length=LENGTH, max_seconds=0.5
    )
    assert 1 <= summary["steps"] < 10**6


def test_warmup_cosine() -> None:
    assert warmup_cosine(0.0) == 0.0
    assert warmup_cosine(0.1) == pytest.approx(1.0)
    assert warmup_cosine(0.55) == pytest.approx(0.5)
    assert warmup_cosine(1.0) == pytest.approx(0.0, abs=1e-12)


def test_augment_keeps_shape_and_is_reproducible() -> None:
    wave = torch.randn(3, 1000)
    a = augment(wave, torch.Generator().manual_seed(1))
    b = augment(wave, torch.Generator().manual_seed(1))
    assert a.shape == wave.shape and torch.equal(a, b) and not torch.equal(a, wave)
