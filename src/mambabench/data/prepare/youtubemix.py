"""Solo-piano audio for ``data=youtubemix``: ``<data-dir>/youtubemix/*.flac``, 16 kHz mono clips of at most
one minute (as the paper's YouTubeMix clips).

Default (offline, PyPI only): real compositions from music21's bundled corpus (Bach chorales and
inventions, Beethoven, Mozart, Haydn, Joplin, Schumann, ...; thousands of pieces) are written as MIDI
and rendered with a sampled acoustic piano (the TimGM6mb SoundFont that the ``pretty-midi`` wheel
ships) by ``tinysoundfont``. ``--minutes`` sets how much (default 70, above the hour the paper's 4 h
of YouTubeMix is scaled down to here).
``--source DIR``: your own recordings instead (the real YouTubeMix: ``krandiash/youtubemix``'s files,
downloaded by you): every WAV/FLAC/OGG under DIR is mixed to mono, resampled to 16 kHz and cut into
clips; unreadable, empty or clipped files are skipped and counted.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from mambabench.data.prepare.common import PrepareError, write_manifest
from mambabench.data.prepare.pip_packages import ensure_package

log = logging.getLogger(__name__)

DESCRIPTION = (
    "solo piano for data=youtubemix: <data-dir>/youtubemix/*.flac, 16 kHz mono clips <= 1 min; offline: "
    "music21's bundled scores rendered with a sampled piano (tinysoundfont); --source: your recordings"
)
SAMPLE_RATE = 16000
COMPOSERS = (
    "bach",
    "beethoven",
    "mozart",
    "haydn",
    "joplin",
    "schumann",
    "chopin",
    "handel",
    "schubert",
    "corelli",
    "monteverdi",
    "palestrina",
)
MIN_CLIP_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=70.0, help="minutes of audio to write (default 70)")
    parser.add_argument(
        "--clip-seconds", type=float, default=60.0, help="longest clip (default 60 s, the paper's)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder of your own music files (WAV/FLAC/OGG) instead of the rendered piano",
    )
    parser.add_argument("--seed", type=int, default=0, help="order in which corpus pieces are drawn")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default <data-dir>/youtubemix)"
    )


def _piano_pieces(seed: int) -> list[Path]:
    ensure_package("music21", "music21>=9")
    ensure_package("pretty_midi", "pretty-midi>=0.2.10")
    ensure_package("tinysoundfont", "tinysoundfont>=0.3", no_deps=True)
    from music21 import corpus

    paths = [Path(p) for composer in COMPOSERS for p in corpus.getComposer(composer)]
    if not paths:
        raise PrepareError("music21's corpus is empty; reinstall music21 (its wheel ships the scores)")
    return [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]


def render_piano(score_path: Path, soundfont: str) -> np.ndarray:
    """Render one corpus score with a sampled piano: float32 mono at 16 kHz, peak-normalised to 0.7."""
    import tinysoundfont
    from music21 import corpus, instrument

    score = corpus.parse(str(score_path))
    parts = getattr(score, "parts", None) or [score]
    for part in parts:
        for old in part.recurse().getElementsByClass(instrument.Instrument):
            part.remove(old, recurse=True)
        part.insert(0, instrument.Piano())
    with tempfile.TemporaryDirectory() as tmp:
        midi = os.path.join(tmp, "piece.mid")
        score.write("midi", fp=midi)
        import pretty_midi

        seconds = pretty_midi.PrettyMIDI(midi).get_end_time() + 1.0
        synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
        synth.sfload(soundfont)
        sequencer = tinysoundfont.Sequencer(synth)
        sequencer.midi_load(midi)
        stereo = np.frombuffer(synth.generate(int(SAMPLE_RATE * seconds)), np.float32).reshape(-1, 2)
    wave = stereo.mean(1)
    peak = float(np.abs(wave).max())
    return wave * (0.7 / peak) if peak > 0 else wave[:0]


def cut_clips(wave: np.ndarray, clip_seconds: float) -> list[np.ndarray]:
    """Consecutive clips of ``clip_seconds`` (the last may be shorter; those under 5 s are dropped)."""
    size = int(clip_seconds * SAMPLE_RATE)
    clips = [wave[i : i + size] for i in range(0, len(wave), size)]
    return [c for c in clips if len(c) >= MIN_CLIP_SECONDS * SAMPLE_RATE]


def _sources_from_folder(folder: Path):
    from mambabench.data.audio_io import AudioFileError, list_audio_files, read_audio

    files = list_audio_files(folder)
    if not files:
        raise PrepareError(f"--source '{folder}' has no WAV/FLAC/OGG files")
    bad = 0
    for path in files:
        try:
            yield path.stem, read_audio(path, SAMPLE_RATE, quiet=True)
        except AudioFileError as err:
            bad += 1
            log.info(f"  skipped: {err}")
    if bad:
        log.info(f"skipped {bad} of {len(files)} source files (unreadable, empty or clipped)")


def _rendered_pieces(seed: int):
    import pretty_midi

    soundfont = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    failed = 0
    for path in _piano_pieces(seed):
        try:
            wave = render_piano(path, soundfont)
        except Exception as err:  # music21 rejects some scores (repeats, odd encodings)
            failed += 1
            log.info(f"  skipped score {path.name}: {type(err).__name__}")
            continue
        if wave.size:
            yield f"{path.parent.name}_{path.stem}".replace(".", "_"), wave
    if failed:
        log.info(f"skipped {failed} scores music21 could not convert")


def prepare(args: argparse.Namespace) -> Path:
    import soundfile as sf
    from tqdm import tqdm

    out = args.out or Path(args.data_dir) / "youtubemix"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.flac"):
        old.unlink()
    target = int(args.minutes * 60 * SAMPLE_RATE)
    pieces = _sources_from_folder(args.source) if args.source else _rendered_pieces(args.seed)
    written, names = 0, []
    with tqdm(total=target, desc="youtubemix audio", unit="sample", unit_scale=True) as bar:
        for name, wave in pieces:
            for k, clip in enumerate(cut_clips(wave, args.clip_seconds)):
                clip = clip[: target - written]
                if len(clip) < MIN_CLIP_SECONDS * SAMPLE_RATE:
                    break
                file = f"{name}_{k:02d}.flac"
                sf.write(str(out / file), clip, SAMPLE_RATE, subtype="PCM_16")
                names.append(file)
                written += len(clip)
                bar.update(len(clip))
            if written >= target:
                break
    if len(names) < 3:
        raise PrepareError(
            f"only {len(names)} clip(s) written to {out}; train/validation/test need at least 3 "
            f"(raise --minutes or give --source more music)"
        )
    write_manifest(
        out,
        {
            "source": str(args.source) if args.source else "music21 corpus + TimGM6mb piano",
            "sample_rate": SAMPLE_RATE,
            "clips": len(names),
            "minutes": round(written / SAMPLE_RATE / 60, 2),
            "files": names,
        },
    )
    log.info(f"youtubemix: {len(names)} clips, {written / SAMPLE_RATE / 60:.1f} min in {out}")
    return out
