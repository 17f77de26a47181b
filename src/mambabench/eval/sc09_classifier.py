"""The SC09 digit classifier behind the sample metrics: a small ResNet on 32-bin log-mel spectrograms.

SaShiMi scores samples with a ResNeXt trained on SC09 mel spectrograms; its weights live on a model
hub, so here the classifier is trained locally on the training split of whatever SC09 folder is used
(``python scripts/train_sc09_classifier.py``, minutes on a CPU for the synthetic set). Its penultimate
activations are the FID features; its softmax outputs feed IS, mIS and AM.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mambabench.data.audio import SC09_WORDS, SpokenDigits, sc09_files
from mambabench.data.audio_dsp import log_mel
from mambabench.utils.errors import MissingFileError

log = logging.getLogger(__name__)


class ResidualConv(nn.Module):
    """conv-BN-ReLU-conv-BN + (strided 1x1) shortcut, then ReLU: (b, c_in, f, t) -> (b, c_out, f/s, t/s)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class DigitResNet(nn.Module):
    """Waveform (batch, samples) at ``sample_rate`` -> logits (batch, classes); ``features`` gives the
    (batch, 4 * width) penultimate activations."""

    def __init__(
        self, n_classes: int = 10, sample_rate: int = 16000, n_mels: int = 32, width: int = 32
    ) -> None:
        super().__init__()
        self.config = {"n_classes": n_classes, "sample_rate": sample_rate, "n_mels": n_mels, "width": width}
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(
            ResidualConv(width, width, 1),
            ResidualConv(width, 2 * width, 2),
            ResidualConv(2 * width, 4 * width, 2),
        )
        self.classifier = nn.Linear(4 * width, n_classes)

    def features(self, wave: Tensor) -> Tensor:
        spec = log_mel(wave, self.sample_rate, n_mels=self.n_mels)  # (batch, n_mels, frames)
        spec = (spec - spec.mean(dim=(1, 2), keepdim=True)) / (spec.std(dim=(1, 2), keepdim=True) + 1e-5)
        return self.blocks(self.stem(spec[:, None])).mean(dim=(2, 3))

    def forward(self, wave: Tensor) -> Tensor:
        return self.classifier(self.features(wave))


def augment(wave: Tensor, generator: torch.Generator) -> Tensor:
    """Random circular shift (up to 0.1 s), gain (x0.5..1.5) and light white noise, per clip of
    ``wave`` (batch, samples); runs on ``wave``'s device with ``generator`` (same device)."""
    batch, length = wave.shape
    device = wave.device
    shifts = torch.randint(-length // 10, length // 10 + 1, (batch, 1), generator=generator, device=device)
    index = (torch.arange(length, device=device)[None] - shifts) % length
    wave = wave.gather(1, index)
    gain = torch.empty(batch, 1, device=device).uniform_(0.5, 1.5, generator=generator)
    return wave * gain + 0.003 * torch.randn(wave.shape, generator=generator, device=device)


def load_clips(
    items: list[tuple[Path, int]], sample_rate: int, length: int, num_workers: int = 0
) -> tuple[Tensor, Tensor]:
    """All clips of a split in memory: waveforms (n, length) float16 and labels (n,) int64. Reading the
    files once (``num_workers`` processes) instead of every epoch keeps the GPU busy."""
    loader = DataLoader(
        SpokenDigits(items, "classify", sample_rate, length), batch_size=256, num_workers=num_workers
    )
    waves, labels = [], []
    for batch in tqdm(loader, desc="reading clips", leave=False):
        waves.append(batch["wave"].half())
        labels.append(batch["labels"])
    return torch.cat(waves), torch.cat(labels)


@torch.no_grad()
def accuracy(model: DigitResNet, waves: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Share of ``waves`` (n, samples) whose predicted digit equals ``labels`` (n,)."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(waves), batch_size):
        logits = model(waves[start : start + batch_size].to(device).float())
        correct += int((logits.argmax(-1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(len(waves), 1)


def warmup_cosine(progress: float, warmup: float = 0.1) -> float:
    """Learning-rate factor at ``progress`` in [0, 1]: linear warmup over ``warmup``, then cosine to 0."""
    if progress < warmup:
        return progress / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def train_classifier(
    root: str | Path,
    out: str | Path,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 32,
    max_train_clips: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    sample_rate: int = 16000,
    length: int = 16000,
    max_seconds: float | None = None,
    eval_every: int = 250,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Train :class:`DigitResNet` on ``root``'s training split for ``steps`` AdamW steps (warmup + cosine)
    or ``max_seconds`` of training, whichever ends first: the schedule follows whichever is further
    along, so a time-limited run still anneals. Saves the model (with its validation and test accuracy)
    to ``out`` and ``out`` with suffix .json; returns that summary."""
    torch.manual_seed(seed)
    splits = {s: sc09_files(root, s) for s in ("train", "validation", "test")}
    if max_train_clips and len(splits["train"]) > max_train_clips:
        keep = np.random.default_rng(seed).choice(len(splits["train"]), max_train_clips, replace=False)
        splits["train"] = [splits["train"][i] for i in sorted(keep)]
    data = {s: load_clips(items, sample_rate, length, num_workers) for s, items in splits.items()}
    train_waves, train_labels = (t.to(device) for t in data["train"])
    log.info(
        f"classifier: {len(train_waves)} training clips, {len(data['validation'][0])} validation, "
        f"{len(data['test'][0])} test; up to {steps} steps of {batch_size}"
        + (f" or {max_seconds:.0f} s" if max_seconds else "")
    )
    model = DigitResNet(len(SC09_WORDS), sample_rate, width=width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    order = torch.randperm(len(train_waves), generator=generator, device=device)
    cursor, step, loss_avg = 0, 0, None
    bar = tqdm(total=steps, desc="classifier", unit="step")
    while True:
        elapsed = time.perf_counter() - started
        progress = max(step / steps, elapsed / max_seconds if max_seconds else 0.0)
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(progress)
        if cursor + batch_size > len(order):  # a new epoch: reshuffle
            order = torch.randperm(len(train_waves), generator=generator, device=device)
            cursor = 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        model.train()
        logits = model(augment(train_waves[index].float(), generator))
        loss = F.cross_entropy(logits, train_labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 10 == 0 or step == 1:
            loss_avg = loss.item() if loss_avg is None else 0.8 * loss_avg + 0.2 * loss.item()
            bar.set_postfix(loss=f"{loss_avg:.3f}")
        bar.update(1)
        if step % eval_every == 0:
            val = accuracy(model, *data["validation"])
            history.append(
                {"step": step, "seconds": round(elapsed, 1), "loss": loss_avg, "val_accuracy": val}
            )
            log.info(f"classifier step {step}: loss {loss_avg:.3f}, validation accuracy {val:.3f}")
    bar.close()
    summary = {
        "val_accuracy": accuracy(model, *data["validation"]),
        "test_accuracy": accuracy(model, *data["test"]),
        "train_accuracy": accuracy(model, *(t[:2048] for t in data["train"])),
        "steps": step,
        "seconds": round(time.perf_counter() - started, 1),
        "train_clips": len(train_waves),
        "root": str(root),
        "history": history,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config, "state_dict": model.cpu().state_dict(), "summary": summary}, out)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    log.info(
        f"classifier saved to {out}: {step} steps, validation accuracy {summary['val_accuracy']:.3f}, "
        f"test accuracy {summary['test_accuracy']:.3f}"
    )
    return summary


def load_classifier(path: str | Path, device: str = "cpu") -> DigitResNet:
    """A classifier saved by :func:`train_classifier`, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"SC09 classifier '{path}' does not exist; train it with "
            f"python scripts/train_sc09_classifier.py (it writes {path.name} under the SC09 folder)"
        )
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = DigitResNet(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


@torch.no_grad()
def classify(
    model: DigitResNet, waves: Tensor, batch_size: int = 128, device: str = "cpu"
) -> tuple[Tensor, Tensor]:
    """(probs (n, classes), features (n, dim)) of waveforms (n, samples)."""
    probs, feats = [], []
    for start in range(0, len(waves), batch_size):
        features = model.features(waves[start : start + batch_size].to(device))
        feats.append(features.cpu())
        probs.append(model.classifier(features).softmax(-1).cpu())
    return torch.cat(probs), torch.cat(feats)
