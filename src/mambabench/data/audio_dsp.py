"""Signal processing for audio in plain PyTorch: mu-law companding, band-limited resampling, log-mel features.

These are the textbook formulas (ITU-T G.711 style mu-law as WaveNet/SaShiMi use it; windowed-sinc
polyphase resampling; HTK mel scale). They are written here rather than taken from torchaudio because
torchaudio's compiled extension must match the exact torch build and refuses to load otherwise, which
would take every audio path down with it; these functions need torch only.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def mu_law_encoding(wave: Tensor, channels: int = 256) -> Tensor:
    """Waveform in [-1, 1] (any shape) -> int64 codes 0..channels-1."""
    mu = channels - 1
    wave = wave.float().clamp(-1.0, 1.0)
    companded = torch.sign(wave) * torch.log1p(mu * wave.abs()) / math.log1p(mu)
    return ((companded + 1) / 2 * mu + 0.5).to(torch.int64)


def mu_law_decoding(codes: Tensor, channels: int = 256) -> Tensor:
    """int codes 0..channels-1 -> float32 waveform in [-1, 1] (inverse of :func:`mu_law_encoding`)."""
    mu = channels - 1
    companded = codes.float() / mu * 2 - 1
    return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, zero_crossings: int = 16, rolloff: float = 0.95) -> tuple[Tensor, int]:
    """Polyphase filter bank (new, 1, width) of a Hann-windowed sinc low-pass and its half-width."""
    cutoff = min(orig, new) * rolloff
    half = math.ceil(zero_crossings * orig / cutoff)
    idx = torch.arange(-half, half + orig, dtype=torch.float64)[None] / orig  # input times, in orig periods
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = (phase + idx) * cutoff
    t = t.clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * cutoff / orig
    return kernel.float()[:, None], half


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Band-limited resampling of (..., samples) from ``orig_rate`` to ``new_rate`` Hz (windowed sinc)."""
    if orig_rate == new_rate:
        return wave
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    shape = wave.shape
    x = wave.reshape(-1, 1, shape[-1]).float()
    kernel, half = _sinc_kernel(orig, new)
    length = shape[-1]
    x = F.pad(x, (half, half + orig))
    y = F.conv1d(x, kernel.to(x.device), stride=orig)  # (batch, new, frames)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    target = math.ceil(new * length / orig)
    return y[..., :target].reshape(*shape[:-1], target)


def _hz_to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular HTK mel filters (n_freqs, n_mels) for a one-sided spectrum of ``n_freqs`` bins."""
    f_max = f_max or sample_rate / 2
    freqs = torch.linspace(0, sample_rate / 2, n_freqs)
    mel_points = torch.linspace(_hz_to_mel(torch.tensor(f_min)), _hz_to_mel(torch.tensor(f_max)), n_mels + 2)
    hz = _mel_to_hz(mel_points)
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    up = (freqs[:, None] - lower) / (centre - lower)
    down = (upper - freqs[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def log_mel(wave: Tensor, sample_rate: int, n_fft: int = 480, hop: int = 160, n_mels: int = 32) -> Tensor:
    """(..., samples) -> (..., n_mels, frames) log(1e-6 + mel power), Hann-windowed STFT."""
    if wave.shape[-1] <= n_fft // 2:  # too short for the reflect padding of a centred STFT
        wave = F.pad(wave, (0, n_fft // 2 + 1 - wave.shape[-1]))
    shape = wave.shape
    spec = (
        torch.stft(
            wave.reshape(-1, shape[-1]).float(),
            n_fft,
            hop,
            window=torch.hann_window(n_fft, device=wave.device),
            return_complex=True,
        ).abs()
        ** 2
    )
    mel = torch.einsum(
        "bft,fm->bmt", spec, mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate).to(wave.device)
    )
    return torch.log(mel + 1e-6).reshape(*shape[:-1], n_mels, -1)
