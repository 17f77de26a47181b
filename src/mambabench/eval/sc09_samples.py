"""Score a folder of generated SC09 clips and print Table 4 with the paper's rows beside ours.

``python src/eval.py task=sc09_samples samples_dir=<folder of WAVs> [nll_bits=<test bits per sample>]``.
Reference statistics (for FID and AM) are the classifier's outputs on the training split; the same
metrics on held-out test clips give the real-data upper bound ("Test data" row), and on training clips
the "Train data" row (FID 0 by construction).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mambabench.data.audio import sc09_files
from mambabench.data.audio_io import AudioFileError, fit_length, list_audio_files, read_audio
from mambabench.eval.audio_metrics import sample_metrics
from mambabench.eval.sc09_classifier import classify, load_classifier

log = logging.getLogger(__name__)

#: Table 4 of the Mamba paper (NLL in bits; None where the model has no likelihood)
PAPER_TABLE4 = [
    ("SampleRNN", "35.0M", 2.042, 8.96, 1.71, 3.02, 1.76),
    ("WaveNet", "4.2M", 1.925, 5.08, 2.27, 5.80, 1.47),
    ("SaShiMi", "5.8M", 1.873, 1.99, 5.13, 42.57, 0.74),
    ("WaveGAN", "19.1M", None, 2.03, 4.90, 36.10, 0.80),
    ("DiffWave", "24.1M", None, 1.92, 5.26, 51.21, 0.68),
    ("DiffWave + SaShiMi", "23.0M", None, 1.42, 5.94, 69.17, 0.59),
    ("Mamba", "6.1M", 1.852, 0.94, 6.26, 88.54, 0.52),
    ("Mamba", "24.3M", 1.860, 0.67, 7.33, 144.9, 0.36),
    ("Train data", "-", None, 0.00, 8.56, 292.5, 0.16),
    ("Test data", "-", None, 0.02, 8.33, 257.6, 0.19),
]


def read_clips(paths: list[Path], sample_rate: int, length: int) -> tuple[torch.Tensor, int]:
    """(n, length) waveforms of the readable files and how many were skipped (each skip is printed)."""
    waves, skipped = [], 0
    for path in paths:
        try:
            waves.append(fit_length(read_audio(path, sample_rate, check_clipping=False, quiet=True), length))
        except AudioFileError as err:
            skipped += 1
            log.info(f"  skipped: {err}")
    if not waves:
        raise AudioFileError(f"none of the {len(paths)} files could be read")
    return torch.from_numpy(np.stack(waves)), skipped


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table4_markdown(ours: list[tuple[str, str, float | None, dict[str, float]]]) -> str:
    """Markdown Table 4: the paper's rows, then ours (name, params, nll bits, metrics)."""
    lines = [
        "| Model | Params | NLL↓ | FID↓ | IS↑ | mIS↑ | AM↓ | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, params, nll, fid, is_, mis, am in PAPER_TABLE4:
        lines.append(
            f"| {name} | {params} | {_fmt(nll, 3)} | {fid:.2f} | {is_:.2f} | {mis:.2f} | {am:.2f} | paper |"
        )
    for name, params, nll, m in ours:
        lines.append(
            f"| {name} | {params} | {_fmt(nll, 3)} | {m['fid']:.2f} | {m['is']:.2f} | {m['mis']:.2f} | "
            f"{m['am']:.2f} | ours |"
        )
    return "\n".join(lines)


def score_samples(
    samples_dir: str | Path,
    classifier_ckpt: str | Path,
    sc09_root: str | Path,
    out_dir: str | Path,
    max_real_clips: int | None = 2048,
    nll_bits: float | None = None,
    model_name: str = "samples",
    params: str = "-",
    sample_rate: int = 16000,
    length: int = 16000,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of the clips under ``samples_dir`` and of real train/test clips; writes
    ``sc09_metrics.md`` and ``sc09_metrics.json`` to ``out_dir`` and prints the table."""
    samples_dir = Path(samples_dir)
    files = list_audio_files(samples_dir) if samples_dir.is_dir() else []
    if len(files) < 2:
        raise AudioFileError(
            f"samples_dir '{samples_dir}' has {len(files)} audio files; the metrics need at least 2 "
            f"(write them with src/generate.py)"
        )
    model = load_classifier(classifier_ckpt, device)
    rng = np.random.default_rng(seed)

    def real(split: str) -> torch.Tensor:
        items = sc09_files(sc09_root, split)
        if max_real_clips and len(items) > max_real_clips:
            items = [items[i] for i in sorted(rng.choice(len(items), max_real_clips, replace=False))]
        return read_clips([p for p, _ in items], sample_rate, length)[0]

    train_probs, train_feats = classify(model, real("train"), device=device)
    test_probs, test_feats = classify(model, real("test"), device=device)
    sample_waves, skipped = read_clips(files, sample_rate, length)
    probs, feats = classify(model, sample_waves, device=device)
    rows = {
        model_name: sample_metrics(probs, feats, train_probs, train_feats),
        "Train data": sample_metrics(train_probs, train_feats, train_probs, train_feats),
        "Test data": sample_metrics(test_probs, test_feats, train_probs, train_feats),
    }
    table = table4_markdown(
        [
            (model_name, params, nll_bits, rows[model_name]),
            ("Train data", "-", None, rows["Train data"]),
            ("Test data", "-", None, rows["Test data"]),
        ]
    )
    counts = np.bincount(probs.argmax(-1).numpy(), minlength=probs.shape[1]).tolist()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sc09_metrics.md").write_text(table + "\n")
    result = {
        "samples_dir": str(samples_dir),
        "samples": len(files) - skipped,
        "skipped": skipped,
        "nll_bits": nll_bits,
        "metrics": rows,
        "predicted_digit_counts": counts,
        "classifier": str(classifier_ckpt),
    }
    (out_dir / "sc09_metrics.json").write_text(json.dumps(result, indent=2))
    lines = ["row,clips,nll_bits,fid,is,mis,am"]
    clips = {model_name: len(files) - skipped, "Train data": len(train_probs), "Test data": len(test_probs)}
    for row, values in rows.items():
        nll = nll_bits if row == model_name and nll_bits is not None else ""
        lines.append(
            f"{row},{clips[row]},{nll},{values['fid']:.4f},{values['is']:.4f},{values['mis']:.4f},{values['am']:.4f}"
        )
    (out_dir / "sc09_metrics.csv").write_text("\n".join(lines) + "\n")
    flat = {f"sc09/{row}/{name}": value for row, values in rows.items() for name, value in values.items()}
    if nll_bits is not None:
        flat[f"sc09/{model_name}/nll_bits"] = nll_bits
    (out_dir / "summary.json").write_text(
        json.dumps({"task": "sc09_samples", "samples_dir": str(samples_dir), "metrics": flat}, indent=2)
    )
    log.info(table)
    log.info(
        f"\n{len(files) - skipped} samples scored ({skipped} skipped); predicted digits: {counts}; "
        f"written to {out_dir}/sc09_metrics.md"
    )
    return result
