"""Audio reading (bad input), mu-law, resampling, and the YouTubeMix / SC09 data modules on the shipped clips."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mambabench.data.audio import SC09_WORDS, SC09DataModule, YouTubeMixDataModule, sc09_files, split_files
from mambabench.data.audio_dsp import mu_law_decoding, mu_law_encoding, resample
from mambabench.data.audio_io import AudioFileError, read_audio
from mambabench.utils.errors import ConfigError


def _data(name: str) -> Path:
    return Path(os.environ["MAMBABENCH_DATA"]) / name


def test_mu_law_round_trip_and_silence_code() -> None:
    wave = torch.linspace(-1, 1, 1001)
    codes = mu_law_encoding(wave)
    assert codes.min() == 0 and codes.max() == 255
    assert int(mu_law_encoding(torch.zeros(1))) == 128
    assert (mu_law_decoding(codes) - wave).abs().max() < 0.04  # 8-bit mu-law is coarse at full scale
    small = torch.linspace(-0.01, 0.01, 101)
    assert (mu_law_decoding(mu_law_encoding(small)) - small).abs().max() < 5e-4  # and fine near zero


def test_resample_keeps_a_sine() -> None:
    t = torch.arange(22050) / 22050
    y = resample(torch.sin(2 * math.pi * 440 * t), 22050, 16000)
    ref = torch.sin(2 * math.pi * 440 * torch.arange(16000) / 16000)
    assert y.shape == (16000,)
    assert (y[100:-100] - ref[100:-100]).abs().max() < 1e-2


def test_read_audio_mixes_stereo_and_resamples_with_a_note(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 200 * t), np.zeros_like(t)
    sf.write(tmp_path / "stereo8k.wav", np.stack([left, right], 1), 8000)
    with pytest.warns(UserWarning, match="8000 Hz; resampled to 16000"):
        wave = read_audio(tmp_path / "stereo8k.wav", 16000)
    assert wave.shape == (16000,) and wave.dtype == np.float32
    assert abs(np.abs(wave).max() - 0.25) < 0.01  # mean of the two channels


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: sf.write(p, np.zeros(0), 16000), "is empty"),
        (lambda p: p.write_bytes(b"RIFF....WAVEnot really"), "cannot read audio file"),
        (lambda p: sf.write(p, np.sign(np.sin(np.arange(16000))), 16000), "is clipped"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioFileError, match=message) as info:
        read_audio(path, 16000)
    assert "bad.wav" in str(info.value)


def test_split_by_file_is_deterministic_and_disjoint() -> None:
    files = [Path(f"f{i}.wav") for i in range(20)]
    a, b = split_files(files, 0.8, seed=3), split_files(list(reversed(files)), 0.8, seed=3)
    assert a["train"] == sorted(a["train"]) and len(a["validation"]) == 2 and len(a["test"]) == 2
    assert not set(a["train"]) & (set(a["validation"]) | set(a["test"]))
    assert set(a["validation"]) == set(split_files(files, 0.8, seed=3)["validation"])
    assert len(b["train"]) == 16


def test_youtubemix_windows_are_next_sample_pairs() -> None:
    dm = YouTubeMixDataModule(
        str(_data("youtubemix")), seq_len=1024, batch_size=2, train_fraction=0.34, max_eval_windows=4
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (2, 1024) and batch["input_ids"].max() < 256
    assert torch.equal(batch["input_ids"][:, 1:], batch["targets"][:, :-1])
    val = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(val["input_ids"], again["input_ids"])  # fixed evaluation windows


def test_youtubemix_explains_a_context_longer_than_every_clip() -> None:
    dm = YouTubeMixDataModule(str(_data("youtubemix")), seq_len=10**6, batch_size=1, train_fraction=0.34)
    with pytest.raises(ConfigError, match="lower data.seq_len"):
        dm.setup("fit")


def test_sc09_layout_modes_and_speaker_splits() -> None:
    root = _data("sc09")
    train, test = sc09_files(root, "train"), sc09_files(root, "test")
    assert len(train) == 10 and len(test) == 10
    assert {p.name.split("_")[0] for p, _ in train}.isdisjoint({p.name.split("_")[0] for p, _ in test})
    lm = SC09DataModule(str(root), batch_size=2, seq_len=16000)
    lm.setup()
    item = lm.datasets["train"][0]
    assert item["input_ids"].shape == (16000,) and int(item["input_ids"][0]) == 128
    assert torch.equal(item["input_ids"][1:], item["targets"][:-1])
    cls = SC09DataModule(str(root), batch_size=2, mode="classify")
    cls.setup()
    assert cls.num_classes == 10 and cls.vocab_size is None
    sample = cls.datasets["test"][3]
    assert sample["wave"].shape == (16000,) and int(sample["labels"]) == 3


def test_sc09_without_lists_says_which_layout(tmp_path: Path) -> None:
    (tmp_path / "zero").mkdir()
    with pytest.raises(ConfigError, match="validation_list.txt"):
        sc09_files(tmp_path, "train")


def _tiny_sc09(root: Path, rate: int, channels: int = 1) -> None:
    """One clip per digit and split at ``rate`` Hz with ``channels`` channels (Speech Commands layout)."""
    t = np.arange(rate // 4) / rate
    for label, word in enumerate(SC09_WORDS):
        (root / word).mkdir(parents=True)
        for split in ("a", "b", "c"):
            tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * label) * t)
            sf.write(root / word / f"{split}_nohash_0.wav", np.stack([tone] * channels, 1), rate)
    (root / "validation_list.txt").write_text("\n".join(f"{w}/b_nohash_0.wav" for w in SC09_WORDS) + "\n")
    (root / "testing_list.txt").write_text("\n".join(f"{w}/c_nohash_0.wav" for w in SC09_WORDS) + "\n")


def test_sc09_other_rate_and_stereo_are_resampled_and_mixed_with_a_note(tmp_path: Path) -> None:
    _tiny_sc09(tmp_path, 8000, channels=2)
    data = SC09DataModule(str(tmp_path), batch_size=2, mode="classify", seq_len=16000)
    with pytest.warns(UserWarning, match="are 8000 Hz; they are resampled to 16000 Hz"):
        data.setup()
    wave = data.datasets["train"][1]["wave"]
    assert wave.shape == (16000,) and 0.25 < float(wave.abs().max()) < 0.35


def test_sc09_corrupt_clip_is_named(tmp_path: Path) -> None:
    _tiny_sc09(tmp_path, 16000)
    (tmp_path / "seven" / "a_nohash_0.wav").write_bytes(b"RIFF....WAVEnot really")
    data = SC09DataModule(str(tmp_path), batch_size=2, mode="lm", seq_len=4000)
    data.setup()
    with pytest.raises(AudioFileError, match="seven/a_nohash_0.wav"):
        [data.datasets["train"][i] for i in range(10)]
