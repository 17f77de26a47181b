"""Audio files in and out: reading with checks, mu-law tokens, WAV writing and spectrogram pictures.

Every audio path of the project goes through :func:`read_audio`: it reads anything libsndfile reads
(WAV, FLAC, OGG/Vorbis), mixes stereo down to mono, resamples to the wanted rate (with a note), and
refuses empty, silent-by-corruption or heavily clipped files with an error naming the file.
Waveforms are float32 in [-1, 1]; tokens are 8-bit mu-law codes 0..255 (SaShiMi / the Mamba paper's
``bits: 8, quantization: mu-law``), with 128 the code of silence.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mambabench.data.audio_dsp import log_mel, mu_law_decoding, mu_law_encoding, resample
from mambabench.utils.errors import InputError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MU_LAW_CHANNELS = 256
SILENCE_TOKEN = MU_LAW_CHANNELS // 2
#: a file whose samples sit at full scale this often is treated as clipped
MAX_CLIPPED_FRACTION = 0.01


class AudioFileError(InputError):
    """An audio file cannot be used; the message names the file and what is wrong with it."""


def list_audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted so that splits are reproducible."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_audio(path: Path, sample_rate: int, check_clipping: bool = True, quiet: bool = False) -> np.ndarray:
    """Mono float32 waveform (samples,) of ``path`` at ``sample_rate``.

    Stereo (or more channels) is averaged; another rate is resampled (windowed-sinc interpolation),
    with a warning unless ``quiet``. Raises :class:`AudioFileError` for unreadable, empty or clipped files.
    """
    import soundfile as sf

    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises LibsndfileError / RuntimeError with its own text
        raise AudioFileError(
            f"cannot read audio file '{path}': {str(err).rstrip('.')}; is it a WAV/FLAC/OGG file? "
            "Replace or delete it"
        ) from None
    if data.size == 0:
        raise AudioFileError(f"audio file '{path}' is empty (0 samples); delete or replace it")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioFileError(f"audio file '{path}' contains NaN or infinite samples; it is corrupt")
    if check_clipping:
        clipped = float(np.mean(np.abs(wave) >= 0.999))
        if clipped > MAX_CLIPPED_FRACTION:
            raise AudioFileError(
                f"audio file '{path}' is clipped: {clipped:.1%} of its samples are at full scale "
                f"(limit {MAX_CLIPPED_FRACTION:.0%}); re-export it at a lower gain"
            )
    if rate != sample_rate:
        if not quiet:
            warnings.warn(f"'{path.name}' is {rate} Hz; resampled to {sample_rate} Hz", stacklevel=2)
        wave = resample(torch.from_numpy(np.ascontiguousarray(wave)), rate, sample_rate).numpy()
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def mu_law_encode(wave: np.ndarray | Tensor, channels: int = MU_LAW_CHANNELS) -> Tensor:
    """Waveform in [-1, 1] -> mu-law codes 0..channels-1 (int64 tensor of the same shape)."""
    wave = torch.as_tensor(wave, dtype=torch.float32).clamp(-1.0, 1.0)
    return mu_law_encoding(wave, channels)


def mu_law_decode(tokens: Tensor | np.ndarray, channels: int = MU_LAW_CHANNELS) -> Tensor:
    """Mu-law codes -> float32 waveform in [-1, 1]."""
    return mu_law_decoding(torch.as_tensor(tokens).long(), channels)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Centre-pad with zeros or centre-crop ``wave`` to exactly ``length`` samples."""
    if len(wave) >= length:
        start = (len(wave) - length) // 2
        return wave[start : start + length]
    pad = length - len(wave)
    return np.pad(wave, (pad // 2, pad - pad // 2))


def write_wav(path: Path, wave: np.ndarray | Tensor, sample_rate: int) -> Path:
    """Write a mono float waveform as 16-bit PCM WAV (FLAC when ``path`` ends in .flac)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.clip(torch.as_tensor(wave).float().cpu().numpy(), -1.0, 1.0)
    sf.write(str(path), wave, sample_rate, subtype="PCM_16")
    return path


def save_spectrogram(path: Path, wave: np.ndarray | Tensor, sample_rate: int, title: str = "") -> Path:
    """A log-mel spectrogram of ``wave`` (above its waveform) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wave = torch.as_tensor(wave).float().cpu()
    spectrum = log_mel(wave, sample_rate, n_fft=1024, hop=max(1, sample_rate // 100), n_mels=64).numpy()
    seconds = len(wave) / sample_rate
    fig, (ax_wave, ax_spec) = plt.subplots(
        2, 1, figsize=(8, 4.5), sharex=True, gridspec_kw={"height_ratios": [1, 3]}
    )
    ax_wave.plot(np.arange(len(wave)) / sample_rate, wave.numpy(), lw=0.4)
    ax_wave.set_ylim(-1, 1)
    ax_wave.set_ylabel("amplitude")
    ax_spec.imshow(
        spectrum, origin="lower", aspect="auto", extent=(0, seconds, 0, spectrum.shape[0]), cmap="magma"
    )
    ax_spec.set_xlabel("time (s)")
    ax_spec.set_ylabel("mel bin")
    if title:
        ax_wave.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_audio_samples(
    tokens: Tensor, out_dir: Path, sample_rate: int, spectrograms: int = 4, wandb_log: bool = False
) -> list[Path]:
    """Decode generated mu-law tokens (samples, length) to ``out_dir/sample_XXX.wav``, draw the
    spectrograms of the first ``spectrograms`` as PNGs, and (optionally) log the clips to W&B."""
    out_dir = Path(out_dir)
    waves = mu_law_decode(tokens.cpu())
    paths = []
    for i, wave in enumerate(waves):
        paths.append(write_wav(out_dir / f"sample_{i:03d}.wav", wave, sample_rate))
        if i < spectrograms:
            save_spectrogram(
                out_dir / f"sample_{i:03d}.png", wave, sample_rate, title=f"generated sample {i}"
            )
    if wandb_log:
        import wandb

        started = wandb.run is None
        run = wandb.run or wandb.init(project="mambabench", job_type="generate", dir=str(out_dir))
        run.log(
            {
                "samples": [
                    wandb.Audio(w.numpy(), sample_rate=sample_rate, caption=p.name)
                    for w, p in zip(waves, paths)
                ]
            }
        )
        if started:
            run.finish()
    log.info(
        f"wrote {len(paths)} WAV files ({waves.shape[1] / sample_rate:.2f} s each) and "
        f"{min(spectrograms, len(paths))} spectrograms to {out_dir}"
    )
    return paths
