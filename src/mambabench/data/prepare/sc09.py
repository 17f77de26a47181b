"""SC09-like spoken digits for ``data=sc09``: ``<data-dir>/sc09/<word>/<speaker>_nohash_<take>.wav`` with
``validation_list.txt`` and ``testing_list.txt`` (the Speech Commands layout, so the real SC09 folder is a
drop-in replacement via ``data.root=``).

The speech comes from eSpeak NG (PyPI ``espeakng-loader`` ships the library and its voice data; no
system package is needed). A "speaker" is one English voice (en-us, en-gb, Scottish, RP, Caribbean,
New York, ...) with one of eSpeak's ~100 voice variants (m1..m8, f1..f5, klatt, whisper, croak, ...),
a base pitch and a base speed; every take jitters pitch and speed around them. Each clip is
synthesised at 22,050 Hz, resampled to 16 kHz, trimmed of silence, cut to at most one second, and
augmented: gain, a random position inside the one-second frame, and background noise at 20-45 dB SNR.
Speakers are split disjointly: no voice of the validation or test lists is heard in training.
Synthetic speech is far less varied than SC09's 2,618 real speakers; treat numbers on it as a
pipeline check, not as the paper's.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
from pathlib import Path

import numpy as np

from mambabench.data.prepare.common import PrepareError, write_manifest
from mambabench.data.prepare.pip_packages import ensure_package

log = logging.getLogger(__name__)

DESCRIPTION = (
    "SC09-like spoken digits for data=sc09: <data-dir>/sc09/<word>/*.wav + validation/testing lists, "
    "synthesised offline by eSpeak NG (PyPI espeakng-loader) with many voices, speeds and pitches"
)
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BASE_VOICES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
SAMPLE_RATE = 16000
CLIP = 16000
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_SYNCHRONOUS, _CHARS_UTF8, _POS_CHARACTER = 2, 1, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speakers", type=int, default=300, help="number of synthetic speakers (default 300)"
    )
    parser.add_argument("--takes", type=int, default=2, help="takes of each digit per speaker (default 2)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of speakers in validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of speakers in test")
    parser.add_argument(
        "--format",
        choices=("wav", "flac"),
        default="wav",
        help="file format (flac: about half the size, e.g. to ship a small set)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes synthesising speakers in parallel (default 1)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <data-dir>/sc09)")


class ESpeak:
    """eSpeak NG through ctypes: ``synth(text, voice, rate_wpm, pitch, pitch_range)`` -> float32 at 22,050 Hz."""

    def __init__(self) -> None:
        espeakng_loader = ensure_package("espeakng_loader", "espeakng-loader>=0.2.4")
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.voice_dir = Path(espeakng_loader.get_data_path())
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, str(self.voice_dir).encode(), 0)
        if self.rate <= 0:
            raise PrepareError(f"eSpeak NG failed to initialise with its data at {self.voice_dir}")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._callback = callback_type(self._collect)  # keep a reference: eSpeak calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.c_void_p) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def variants(self) -> list[str]:
        return sorted(p.name for p in (self.voice_dir / "voices" / "!v").iterdir() if p.is_file())

    def synth(self, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int = 50) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            return np.zeros(0, np.float32)
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_ESPEAK_RANGE, int(pitch_range), 0)
        self._chunks = []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def trim_silence(wave: np.ndarray, threshold: float = 0.02, frame: int = 160) -> np.ndarray:
    """Drop leading and trailing frames whose peak is below ``threshold`` x the clip's peak."""
    peak = np.abs(wave).max() if wave.size else 0.0
    if peak == 0:
        return wave[:0]
    n = len(wave) // frame
    loud = np.flatnonzero(np.abs(wave[: n * frame]).reshape(n, frame).max(1) >= threshold * peak)
    if loud.size == 0:
        return wave[:0]
    return wave[loud[0] * frame : (loud[-1] + 1) * frame]


def augment(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Place ``speech`` (<= CLIP samples) at a random offset of a one-second frame, set a random peak
    level and add white noise at a random SNR."""
    speech = speech[:CLIP]
    frame = np.zeros(CLIP, np.float32)
    offset = int(rng.integers(0, CLIP - len(speech) + 1))
    frame[offset : offset + len(speech)] = speech * (rng.uniform(0.3, 0.9) / max(np.abs(speech).max(), 1e-6))
    power = float(np.mean(frame[offset : offset + len(speech)] ** 2))
    snr_db = rng.uniform(20.0, 45.0)
    frame += rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), CLIP).astype(np.float32)
    return np.clip(frame, -1.0, 1.0)


def make_speakers(count: int, variants: list[str], rng: np.random.Generator) -> list[dict]:
    """``count`` distinct (voice, variant, pitch, speed) speakers."""
    seen, speakers = set(), []
    pool = [""] + variants
    while len(speakers) < count:
        voice = BASE_VOICES[int(rng.integers(len(BASE_VOICES)))]
        variant = pool[int(rng.integers(len(pool)))]
        pitch = int(rng.integers(15, 86))
        rate = int(rng.integers(120, 211))
        key = (voice, variant, pitch // 5, rate // 10)
        if key in seen:
            continue
        seen.add(key)
        speakers.append(
            {
                "id": f"spk{len(speakers):04d}",
                "voice": voice + (f"+{variant}" if variant else ""),
                "pitch": pitch,
                "rate": rate,
                "range": int(rng.integers(20, 80)),
            }
        )
    return speakers


_worker_espeak: ESpeak | None = None


def _start_worker() -> None:
    """Pool initialiser: one eSpeak NG instance per process (its state is global), one torch thread."""
    import torch

    global _worker_espeak
    torch.set_num_threads(1)
    _worker_espeak = ESpeak()


def render_speaker(job: tuple[dict, int, int, str, Path, int]) -> tuple[list[str], int]:
    """Every digit x take of one speaker, written under ``out``: (relative paths written, clips skipped).
    The random choices depend only on (seed, speaker index), whatever --workers is; eSpeak NG itself is
    not bit-exact from call to call (a few samples of length), so files differ slightly between runs."""
    import soundfile as sf
    import torch

    from mambabench.data.audio_dsp import resample

    speaker, index, takes, fmt, out, seed = job
    espeak = _worker_espeak or ESpeak()
    rng = np.random.default_rng([seed, index])
    written, skipped = [], 0
    for word in WORDS:
        for take in range(takes):
            rate = speaker["rate"] + int(rng.integers(-15, 16))
            pitch = int(np.clip(speaker["pitch"] + rng.integers(-6, 7), 0, 99))
            raw = espeak.synth(word, speaker["voice"], rate, pitch, speaker["range"])
            if raw.size == 0:
                skipped += 1
                continue
            speech = trim_silence(resample(torch.from_numpy(raw), espeak.rate, SAMPLE_RATE).numpy())
            if speech.size < SAMPLE_RATE // 10:
                skipped += 1
                continue
            rel = f"{word}/{speaker['id']}_nohash_{take}.{fmt}"
            (out / word).mkdir(parents=True, exist_ok=True)
            sf.write(str(out / rel), augment(speech, rng), SAMPLE_RATE, subtype="PCM_16")
            written.append(rel)
    return written, skipped


def prepare(args: argparse.Namespace) -> Path:
    import multiprocessing

    from tqdm import tqdm

    if args.speakers < 3:
        raise PrepareError("--speakers must be at least 3 (train, validation and test need a speaker each)")
    out = Path(args.out or Path(args.data_dir) / "sc09")
    rng = np.random.default_rng(args.seed)
    espeak = ESpeak()
    speakers = make_speakers(args.speakers, espeak.variants(), rng)
    order = rng.permutation(len(speakers))
    n_val = max(1, round(len(speakers) * args.val_fraction))
    n_test = max(1, round(len(speakers) * args.test_fraction))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[speakers[index]["id"]] = (
            "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
        )
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    skipped = 0
    counts = {"train": 0, "validation": 0, "test": 0}
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(speaker, i, args.takes, args.format, out, args.seed) for i, speaker in enumerate(speakers)]
    workers = max(1, int(getattr(args, "workers", 1)))
    pool = (
        multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker) if workers > 1 else None
    )
    results = pool.imap(render_speaker, jobs) if pool else map(render_speaker, jobs)
    try:
        with tqdm(total=len(jobs) * len(WORDS) * args.takes, desc="sc09 clips", unit="clip") as bar:
            for speaker, (written, missed) in zip(speakers, results):
                bar.update(len(WORDS) * args.takes)
                skipped += missed
                split = split_of[speaker["id"]]
                counts[split] += len(written)
                if split != "train":
                    lists[split] += written
    finally:
        if pool:
            pool.close()
            pool.join()
    (out / "validation_list.txt").write_text("\n".join(sorted(lists["validation"])) + "\n")
    (out / "testing_list.txt").write_text("\n".join(sorted(lists["test"])) + "\n")
    if skipped:
        log.info(f"skipped {skipped} clips that eSpeak NG rendered empty or too short")
    write_manifest(
        out,
        {
            "source": "eSpeak NG via PyPI espeakng-loader",
            "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP,
            "clips": counts,
            "skipped": skipped,
            "speakers": speakers,
            "speaker_split": split_of,
            "seed": args.seed,
        },
    )
    log.info(f"sc09: {sum(counts.values())} clips ({counts}) from {len(speakers)} speakers")
    return out
