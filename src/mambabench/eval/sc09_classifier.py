"""The SC09 digit classifier behind the sample metrics: a small ResNet on 32-bin log-mel spectrograms.

SaShiMi scores samples with a ResNeXt trained on SC09 mel spectrograms; its weights live on a model
hub, so here the classifier is trained locally on the training split of whatever SC09 folder is used
(``python scripts/train_sc09_classifier.py``, minutes on a CPU for the synthetic set). Its penultimate
activations are the FID features; its softmax outputs feed IS, mIS and AM.
"""

from __future__ import annotations

import json
import logging
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


def _augment(wave: Tensor, generator: torch.Generator) -> Tensor:
    """Random circular shift (up to 0.1 s), gain and light noise, per clip."""
    batch, length = wave.shape
    shifts = torch.randint(-length // 10, length // 10 + 1, (batch,), generator=generator)
    wave = torch.stack([torch.roll(w, int(s)) for w, s in zip(wave, shifts)])
    gain = torch.empty(batch, 1).uniform_(0.5, 1.5, generator=generator)
    return wave * gain + 0.003 * torch.randn(wave.shape, generator=generator)


@torch.no_grad()
def accuracy(model: DigitResNet, loader: DataLoader, device: str) -> float:
    model.eval()
    correct = total = 0
    for batch in loader:
        logits = model(batch["wave"].to(device))
        correct += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
        total += len(batch["labels"])
    return correct / max(total, 1)


def train_classifier(
    root: str | Path,
    out: str | Path,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    max_train_clips: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    sample_rate: int = 16000,
    length: int = 16000,
) -> dict[str, Any]:
    """Train :class:`DigitResNet` on ``root``'s training split; save it (with its validation and test
    accuracy) to ``out``. Returns the saved summary."""
    torch.manual_seed(seed)
    splits = {s: sc09_files(root, s) for s in ("train", "validation", "test")}
    if max_train_clips and len(splits["train"]) > max_train_clips:
        keep = np.random.default_rng(seed).choice(len(splits["train"]), max_train_clips, replace=False)
        splits["train"] = [splits["train"][i] for i in sorted(keep)]
    loaders = {
        s: DataLoader(
            SpokenDigits(items, "classify", sample_rate, length), batch_size=batch_size, shuffle=s == "train"
        )
        for s, items in splits.items()
    }
    model = DigitResNet(len(SC09_WORDS), sample_rate, width=width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * len(loaders["train"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        bar = tqdm(loaders["train"], desc=f"classifier epoch {epoch + 1}/{epochs}", leave=False)
        for batch in bar:
            logits = model(_augment(batch["wave"], generator).to(device))
            loss = F.cross_entropy(logits, batch["labels"].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val = accuracy(model, loaders["validation"], device)
        history.append({"epoch": epoch + 1, "val_accuracy": val})
        log.info(f"classifier epoch {epoch + 1}/{epochs}: validation accuracy {val:.3f}")
    summary = {
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "test_accuracy": accuracy(model, loaders["test"], device),
        "epochs": epochs,
        "train_clips": len(splits["train"]),
        "root": str(root),
        "history": history,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config, "state_dict": model.cpu().state_dict(), "summary": summary}, out)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    log.info(f"classifier saved to {out}: test accuracy {summary['test_accuracy']:.3f}")
    return summary


def load_classifier(path: str | Path, device: str = "cpu") -> DigitResNet:
    """A classifier saved by :func:`train_classifier`, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
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
