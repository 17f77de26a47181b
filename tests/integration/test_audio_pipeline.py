"""Audio end to end on the shipped clips: prepare (small) -> train SC09 -> generate WAV + spectrogram ->
digit classifier -> Table 4; YouTubeMix training reports bits per sample."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import open_dict

from mambabench.utils.run import train
from mambabench.utils.sampling import sample_from_checkpoint

TINY = [
    "logger=[]",
    "callbacks.progress_bar=null",
    "model.d_model=8",
    "model.n_layer=1",
    "data.seq_len=256",
    "model.outer_mixer.d_state=4",
    "model.center_mixer.d_state=4",
]


def _data(name: str) -> Path:
    return Path(os.environ["MAMBABENCH_DATA"]) / name


def test_sc09_train_generate_and_score(make_config, tmp_path: Path) -> None:
    cfg = make_config(
        [
            "experiment=audio/sc09/mini",
            *TINY,
            "data.sample_rate=16000",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "data.max_eval_clips=2",
        ]
    )
    metrics = train(cfg)
    assert metrics["test/bits_per_token"] > 0
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    ckpt = summary["last_ckpt"]

    gen = make_config(
        [
            f"ckpt_path={ckpt}",
            "prompt_ids=[128]",
            "max_new_tokens=40",
            "num_samples=4",
            "spectrograms=1",
            "reject_lowest=0.25",  # SaShiMi's rejection by likelihood: one of four dropped
        ],
        config_name="generate.yaml",
        subdir="gen",
    )
    out = sample_from_checkpoint(gen)
    assert out.shape == (3, 41)
    saved = json.loads((Path(gen.paths.output_dir) / "samples.json").read_text())["samples"]
    assert len(saved) == 3 and all(0 < s["bits_per_token"] < 16 for s in saved)
    audio = Path(gen.paths.output_dir) / "audio"
    wave, rate = sf.read(audio / "sample_000.wav")
    assert rate == 16000 and wave.shape == (40,)
    assert (audio / "sample_000.png").stat().st_size > 1000 and not (audio / "sample_001.png").exists()

    from mambabench.eval.sc09_classifier import train_classifier
    from mambabench.eval.sc09_samples import score_samples

    classifier = tmp_path / "classifier.pt"
    summary = train_classifier(_data("sc09"), classifier, steps=2, batch_size=10, width=4)
    assert 0 <= summary["test_accuracy"] <= 1
    for i in range(2):  # pad the 40-sample clips: read_clips pads to one second
        sf.write(audio / f"sample_{i:03d}.wav", np.pad(wave, (0, 100)), 16000)
    result = score_samples(
        audio,
        classifier,
        _data("sc09"),
        tmp_path / "scores",
        max_real_clips=None,
        nll_bits=metrics["test/bits_per_token"],
    )
    table = (tmp_path / "scores" / "sc09_metrics.md").read_text()
    assert "| Mamba | 6.1M | 1.852 | 0.94 | 6.26 | 88.54 | 0.52 | paper |" in table
    assert "| Train data | - | - | 0.00 |" in table and "| samples |" in table
    assert result["metrics"]["Train data"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "scores" / "sc09_metrics.md").exists()
    flat = json.loads((tmp_path / "scores" / "summary.json").read_text())["metrics"]
    assert flat["sc09/Train data/fid"] == pytest.approx(0.0, abs=1e-6) and "sc09/samples/nll_bits" in flat


def test_youtubemix_mini_reports_bits_per_sample(make_config) -> None:
    cfg = make_config(
        [
            "experiment=audio/youtubemix/mini",
            "logger=[]",
            "callbacks.progress_bar=null",
            "data.seq_len=512",
            "data.train_fraction=0.34",
            "model.d_model=8",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "data.max_eval_windows=2",
        ]
    )
    with open_dict(cfg):
        cfg.model.mixer.d_state = 4
    metrics = train(cfg)
    assert 0 < metrics["test/bits_per_token"] < 12


def test_prepare_sc09_disjoint_speakers(tmp_path: Path) -> None:
    """Two processes synthesise the speakers (one eSpeak NG each); speakers stay disjoint across splits."""
    pytest.importorskip("espeakng_loader")
    from mambabench.data.audio import sc09_files
    from mambabench.data.prepare import sc09

    args = argparse.Namespace(
        data_dir=str(tmp_path),
        speakers=3,
        takes=1,
        val_fraction=0.34,
        test_fraction=0.34,
        format="flac",
        seed=0,
        workers=2,
        out=None,
    )
    out = sc09.prepare(args)
    splits = {s: sc09_files(out, s) for s in ("train", "validation", "test")}
    speakers = {s: {p.name.split("_")[0] for p, _ in items} for s, items in splits.items()}
    assert all(len(v) == 1 for v in speakers.values())
    assert len(set.union(*speakers.values())) == 3
    assert sum(len(v) for v in splits.values()) == 30
    wave, rate = sf.read(splits["train"][0][0])
    assert rate == 16000 and wave.shape == (16000,) and 0.05 < np.abs(wave).max() <= 1


def test_prepare_youtubemix_from_a_folder_skips_bad_files(tmp_path: Path, caplog) -> None:
    from mambabench.data.prepare import youtubemix

    source = tmp_path / "music"
    source.mkdir()
    t = np.arange(44100 * 12) / 44100
    for i in range(2):  # 12 s stereo at 44.1 kHz -> two clips of 6 s each
        tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)
        sf.write(source / f"track{i}.wav", np.stack([tone, tone], 1), 44100)
    (source / "broken.wav").write_bytes(b"not audio")
    sf.write(source / "empty.flac", np.zeros(0), 16000)
    args = argparse.Namespace(
        data_dir=str(tmp_path), minutes=1.0, clip_seconds=6.0, source=source, seed=0, out=None
    )
    with caplog.at_level(logging.INFO, logger="mambabench"):
        out = youtubemix.prepare(args)
    assert "skipped 2 of 4 source files" in caplog.text
    clips = sorted(out.glob("*.flac"))
    assert len(clips) == 4
    info = sf.info(clips[0])
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 96000)
