"""Audio data modules: YouTubeMix-style long music waveforms and SC09 spoken digits.

``YouTubeMixDataModule`` (mamba-paper.md §5.2, Figure 7): a folder of music files (WAV/FLAC/OGG) read
at 16 kHz mono and quantised to 8-bit mu-law (vocabulary 256). Files are split into train /
validation / test by file (shuffled once with ``split_seed``; SaShiMi's ``train_percentage: 0.88``).
A window reads ``seq_len + 1`` samples: inputs are the first ``seq_len``, targets the next sample.
Training windows start anywhere in a file (a fresh draw per sample id, so every epoch differs);
evaluation windows tile each file without overlap and stay fixed. Files shorter than a window are
left out (with a note), which is why the number of usable windows changes with the context length.

``SC09DataModule`` (mamba-paper.md §5.3): one-second utterances of "zero".."nine" in the Speech
Commands layout, ``<root>/<word>/<file>.wav`` with ``validation_list.txt`` and ``testing_list.txt``
(paths relative to root; everything else is training). Clips are centre-padded or cropped to
``seq_len`` samples. ``mode=lm`` gives mu-law next-sample prediction with a silence start token;
``mode=classify`` gives float waveforms and digit labels (the metric classifier's data).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.audio_io import (
    MU_LAW_CHANNELS,
    SILENCE_TOKEN,
    AudioFileError,
    fit_length,
    list_audio_files,
    mu_law_encode,
    read_audio,
)
from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.utils.errors import ConfigError

log = logging.getLogger(__name__)

YOUTUBEMIX_PREPARE = "python scripts/prepare_data.py youtubemix"
SC09_PREPARE = "python scripts/prepare_data.py sc09"
SC09_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "validation", "test")


def split_files(files: list[Path], train_fraction: float, seed: int) -> dict[str, list[Path]]:
    """Shuffle ``files`` once with ``seed`` and cut train / validation / test by file.

    Validation and test share the rest equally; each gets at least one file when there are three or more.
    """
    if not 0 < train_fraction < 1:
        raise ConfigError(f"data.train_fraction must be in (0, 1), got {train_fraction}")
    order = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    n = len(order)
    n_eval = max(2, round(n * (1 - train_fraction))) if n >= 3 else 0
    n_val = n_eval // 2
    return {
        "train": sorted(order[n_eval:]),
        "validation": sorted(order[:n_val]),
        "test": sorted(order[n_val:n_eval]),
    }


class WaveformWindows(Dataset):
    """Windows of ``seq_len + 1`` mu-law codes from a list of tokenised files.

    Training (``random_starts``): sample id i draws a file (weighted by its number of start positions)
    and a start from ``np.random.default_rng((seed, i))``; evaluation: the fixed tiling ``starts``.
    Items are {"input_ids": (seq_len,), "targets": (seq_len,)} int64.
    """

    def __init__(
        self,
        tracks: list[np.ndarray],
        seq_len: int,
        random_starts: bool,
        seed: int = 0,
        max_windows: int | None = None,
    ) -> None:
        self.tracks = [t for t in tracks if len(t) >= seq_len + 1]
        self.seq_len = seq_len
        self.random_starts = random_starts
        self.seed = seed
        self.span = np.array([len(t) - seq_len for t in self.tracks], dtype=np.int64)  # start positions
        tiles = [(f, s) for f, t in enumerate(self.tracks) for s in range(0, len(t) - seq_len, seq_len)]
        if max_windows and len(tiles) > max_windows:
            tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, max_windows).round().astype(int)]
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self.random_starts:
            rng = np.random.default_rng((self.seed, int(index)))
            track = int(rng.choice(len(self.tracks), p=self.span / self.span.sum()))
            start = int(rng.integers(0, self.span[track]))
        else:
            track, start = self.tiles[index]
        window = torch.from_numpy(self.tracks[track][start : start + self.seq_len + 1].astype(np.int64))
        return {"input_ids": window[:-1], "targets": window[1:]}


class YouTubeMixDataModule(SequenceDataModule):
    """Long-context mu-law music (see the module docstring).

    Args:
        root: folder of audio files (searched recursively).
        seq_len: context length (paper: 8192 .. 958,464; Table 14).
        sample_rate: target rate; other rates are resampled with a note.
        train_fraction: share of files for training (SaShiMi: 0.88).
        split_seed: seed of the file shuffle that makes the splits.
        train_windows_per_epoch: random training windows per epoch (null: train samples // seq_len).
        max_eval_windows: evenly spaced evaluation windows per split (null: all).
        seed: seed of the training window draws.
    """

    vocab_size = MU_LAW_CHANNELS

    def __init__(
        self,
        root: str,
        seq_len: int,
        batch_size: int,
        sample_rate: int = 16000,
        train_fraction: float = 0.88,
        split_seed: int = 0,
        train_windows_per_epoch: int | None = None,
        max_eval_windows: int | None = 64,
        seed: int = 0,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        if seq_len < 1:
            raise ConfigError(f"data.seq_len must be >= 1, got {seq_len}")
        self.root = Path(root)
        self.seq_len = seq_len
        self.sample_rate = sample_rate
        self.train_fraction = train_fraction
        self.split_seed = split_seed
        self.train_windows_per_epoch = train_windows_per_epoch
        self.max_eval_windows = max_eval_windows
        self.seed = seed
        self.datasets: dict[str, WaveformWindows] = {}

    def _load_split(self, files: list[Path]) -> list[np.ndarray]:
        tracks, resampled = [], 0
        for path in files:
            import soundfile as sf

            try:
                resampled += sf.info(str(path)).samplerate != self.sample_rate
            except Exception:
                pass  # read_audio below raises the error naming the file
            wave = read_audio(path, self.sample_rate, quiet=True)
            tracks.append(mu_law_encode(wave).numpy().astype(np.uint8))
        if resampled:
            warnings.warn(
                f"{resampled} file(s) under {self.root} were not {self.sample_rate} Hz and were resampled",
                stacklevel=2,
            )
        return tracks

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not self.root.is_dir():
            raise ConfigError(
                f"YouTubeMix folder '{self.root}' does not exist; build it with {YOUTUBEMIX_PREPARE} "
                f"or point data.root at a folder of music files"
            )
        files = list_audio_files(self.root)
        if len(files) < 3:
            raise ConfigError(
                f"'{self.root}' has {len(files)} audio file(s); train/validation/test are split by "
                f"file, so at least 3 are needed ({YOUTUBEMIX_PREPARE} cuts music into clips)"
            )
        for split, chosen in split_files(files, self.train_fraction, self.split_seed).items():
            tracks = self._load_split(chosen)
            dataset = WaveformWindows(
                tracks,
                self.seq_len,
                random_starts=split == "train",
                seed=self.seed,
                max_windows=None if split == "train" else self.max_eval_windows,
            )
            if not dataset.tracks:
                longest = max((len(t) for t in tracks), default=0)
                raise ConfigError(
                    f"no {split} file under '{self.root}' holds a window of seq_len+1={self.seq_len + 1} samples "
                    f"(longest {longest}); lower data.seq_len or prepare longer clips"
                )
            if len(dataset.tracks) < len(tracks):
                log.info(
                    f"youtubemix {split}: {len(tracks) - len(dataset.tracks)} of {len(tracks)} files are shorter "
                    f"than {self.seq_len + 1} samples and give no window"
                )
            self.datasets[split] = dataset

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        per_epoch = self.train_windows_per_epoch or max(
            self.batch_size, int(train.span.sum() // self.seq_len)
        )
        return ResumableLoader(train, self.batch_size, per_epoch, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.datasets["validation"])

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.datasets["test"])


def read_split_lists(root: Path) -> dict[str, set[str]]:
    """{"validation": {...}, "test": {...}} relative paths from the Speech Commands list files."""
    out = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        listing = root / name
        if not listing.exists():
            raise ConfigError(
                f"SC09 folder '{root}' has no {name}; it must follow the Speech Commands layout "
                f"(build one with {SC09_PREPARE})"
            )
        out[split] = {line.strip() for line in listing.read_text().splitlines() if line.strip()}
    return out


def sc09_files(root: str | Path, split: str, words: tuple[str, ...] = SC09_WORDS) -> list[tuple[Path, int]]:
    """(path, digit label) of every clip of ``split`` under a Speech Commands style ``root``."""
    root = Path(root)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if not root.is_dir():
        raise ConfigError(
            f"SC09 folder '{root}' does not exist; build it with {SC09_PREPARE} or point "
            f"data.root at the real SC09 / Speech Commands folder"
        )
    lists = read_split_lists(root)
    held_out = lists["validation"] | lists["test"]
    items = []
    for label, word in enumerate(words):
        for path in list_audio_files(root / word):
            rel = path.relative_to(root).as_posix()
            in_split = rel in lists[split] if split != "train" else rel not in held_out
            if in_split:
                items.append((path, label))
    if not items:
        raise ConfigError(f"SC09 folder '{root}' has no {split} clips of {', '.join(words)}")
    return items


class SpokenDigits(Dataset):
    """SC09 clips read lazily. ``mode="lm"``: {"input_ids": (length,), "targets": (length,)} mu-law
    codes, inputs shifted right behind a silence start token; ``mode="classify"``: {"wave": (length,)
    float32, "labels": ()}."""

    def __init__(self, items: list[tuple[Path, int]], mode: str, sample_rate: int, length: int) -> None:
        self.items = items
        self.mode = mode
        self.sample_rate = sample_rate
        self.length = length

    def __len__(self) -> int:
        return len(self.items)

    def wave(self, index: int) -> np.ndarray:
        path, _ = self.items[index]
        return fit_length(read_audio(path, self.sample_rate, check_clipping=False, quiet=True), self.length)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        wave = self.wave(index)
        if self.mode == "classify":
            return {"wave": torch.from_numpy(wave), "labels": torch.tensor(self.items[index][1])}
        tokens = mu_law_encode(wave)
        inputs = torch.cat([torch.tensor([SILENCE_TOKEN]), tokens[:-1]])
        return {"input_ids": inputs, "targets": tokens}


class SC09DataModule(SequenceDataModule):
    """Spoken digits (see the module docstring).

    Args:
        root: Speech Commands style folder (real SC09 or ``scripts/prepare_data.py sc09``'s).
        mode: "lm" (mu-law generation, vocab 256) or "classify" (waveform + digit, 10 classes).
        seq_len: samples per clip (16,000 = one second at 16 kHz).
        max_eval_clips: first clips of each evaluation split (null: all).
    """

    MODES = ("lm", "classify")

    def __init__(
        self,
        root: str,
        batch_size: int,
        mode: str = "lm",
        sample_rate: int = 16000,
        seq_len: int = 16000,
        max_eval_clips: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        if mode not in self.MODES:
            raise ConfigError(f"data.mode must be one of {self.MODES}, got {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.sample_rate = sample_rate
        self.length = seq_len
        self.max_eval_clips = max_eval_clips
        self.vocab_size = MU_LAW_CHANNELS if mode == "lm" else None
        self.num_classes = len(SC09_WORDS) if mode == "classify" else None
        self.datasets: dict[str, SpokenDigits] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split in SPLITS:
            items = sc09_files(self.root, split)
            if split != "train" and self.max_eval_clips:
                items = [
                    items[i]
                    for i in np.linspace(0, len(items) - 1, min(len(items), self.max_eval_clips))
                    .round()
                    .astype(int)
                ]
            self.datasets[split] = SpokenDigits(items, self.mode, self.sample_rate, self.length)
        self._check_first_clip()

    def _check_first_clip(self) -> None:
        """Read one clip eagerly so that a wrong folder fails now, not inside a loader worker."""
        import soundfile as sf

        path = self.datasets["train"].items[0][0]
        try:
            rate = sf.info(str(path)).samplerate
        except Exception as err:
            raise AudioFileError(f"cannot read audio file '{path}': {err}") from None
        if rate != self.sample_rate:
            warnings.warn(
                f"SC09 clips under {self.root} are {rate} Hz; they are resampled to {self.sample_rate} Hz "
                f"on the fly",
                stacklevel=2,
            )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["train"],
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.datasets["train"]) > self.batch_size,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.datasets["validation"])

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.datasets["test"])

    def describe(self) -> dict[str, Any]:
        return {split: len(ds) for split, ds in self.datasets.items()}
