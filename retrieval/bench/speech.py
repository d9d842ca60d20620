"""What was said, found: spoken sentences and single words hidden in long recordings between
music and noise, searched by a few of their words, with transcripts (speech on) and with the
audio tower alone (``--no-speech``) on the same files.

A query is the four words in a row of a clip's text that are rarest among the set's texts.
Sets: ``person`` (the Asterisk voice prompts, one woman's recorded voice, Debian
``asterisk-core-sounds-en-wav``, transcripts from ``asterisk-core-sounds-en``); ``sentences``
and ``words`` (everyday sentences and single words read by Flite's ``rms``, a voice xmr never
trained on). Reported per set and signal: file R@1 (the right recording first) and moment
accuracy (the right recording first, its moment overlapping the clip). Also: the word error rate
of the person's prompts transcribed one by one; transcription speed (times real time) on the
recordings, and on music-only and silent audio; indexing a folder without speech with speech on
against off.

Run: ``xmr bench speech [--asterisk DIR] [--files 4] [--clips 12] [--wer-prompts 120]``.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from indexer.storage.fulltext import STOP

from .moment_scoring import _decode
from .report import machine_info, markdown_table, write_outputs

log = logging.getLogger(__name__)
RATE = 16_000
ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SENTENCES = (
    "the budget meeting starts at nine tomorrow morning",
    "please bring the blue folder to the second floor",
    "our flight to lisbon was delayed by two hours",
    "the dentist called to move your appointment to friday",
    "remember to water the tomato plants before the weekend",
    "the library closes early on public holidays",
    "she found the missing keys under the kitchen table",
    "the train to oxford leaves from platform seven",
    "we need three more chairs for the birthday party",
    "the recipe calls for two cups of flour and an egg",
    "turn left after the bridge and park near the bakery",
    "the concert was cancelled because of the storm",
    "my brother is learning to play the violin",
    "the printer on the third floor is out of paper",
    "the museum opens a new exhibition about volcanoes",
    "grandmother is visiting us at the end of june",
    "the football match ended in a draw last night",
    "he forgot his umbrella at the restaurant again",
    "the invoice must be paid before the end of the month",
    "a thunderstorm is expected this afternoon in the valley",
    "the children built a snowman in the garden",
    "the password expires every ninety days",
    "the bakery sells fresh croissants every sunday",
    "the elevator is out of order until thursday",
)
WORDS = (
    "elephant", "violin", "tomorrow", "pineapple", "lighthouse", "saxophone", "breakfast", "umbrella",
    "volcano", "kangaroo", "telescope", "chocolate", "bicycle", "mountain", "giraffe", "hospital",
    "calendar", "dinosaur", "penguin", "strawberry", "astronaut", "butterfly", "sandwich", "tornado",
)  # fmt: skip


def run_speech(
    out_dir: str,
    model: str = "xmr-mini",
    files: int = 4,
    clips: int = 12,
    seed: int = 0,
    asterisk: str | None = None,
    wer_prompts: int = 120,
    quiet_minutes: float = 10.0,
) -> dict[str, Any]:
    """See the module docstring.

    Raises:
        FileNotFoundError: no Asterisk prompts (``apt-get install asterisk-core-sounds-en-wav
            asterisk-core-sounds-en``, or ``--asterisk DIR``) or no Flite.
    """
    from retrieval import create_model
    from retrieval.models.speech import SpeechRecognizer

    prompts = _asterisk_prompts(Path(asterisk) if asterisk else ASTERISK)
    if shutil.which("flite") is None:
        raise FileNotFoundError("flite is not installed (apt-get install flite)")
    encoder, recognizer = create_model(model), SpeechRecognizer()
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-speech-"))
    result: dict[str, Any] = {"model": model, "recogniser": recognizer.model_id, "files": files, "clips": clips}
    try:
        chosen = rng.choice(len(prompts), size=min(len(prompts), files * clips), replace=False)
        sets = {
            "person": [(prompts[i][1], _decode(str(prompts[i][0]))) for i in chosen],
            "sentences": [(t, _flite(t, work)) for t in _pick(SENTENCES, files * clips, rng)],
            "words": [(t, _flite(t, work)) for t in _pick(WORDS, files * clips, rng)],
        }
        result["sets"] = {
            name: _find(name, found, work / name, encoder, recognizer, files, clips, rng)
            for name, found in sets.items()
        }
        result["wer"] = _wer(prompts, recognizer, wer_prompts, rng)
        result["speed"] = _speed(recognizer, work, quiet_minutes, encoder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = machine_info()
    rows = [
        {"set": name, "signal": signal, **scores}
        for name, by_signal in result["sets"].items()
        for signal, scores in by_signal.items()
        if signal != "queries"
    ]
    table = markdown_table(rows, ["set", "signal", "file_R@1", "moment_accuracy"])
    table += f"\nword error rate, {result['wer']['prompts']} Asterisk prompts: {result['wer']['wer']:.3f}\n"
    table += "\n" + markdown_table([result["speed"]], list(result["speed"]))
    result["files"] = {k: str(v) for k, v in write_outputs(out_dir, "speech", result, table).items()}
    return result


def _asterisk_prompts(folder: Path) -> list[tuple[Path, str]]:
    """``(wav, transcript)`` of the Asterisk prompts (no bracketed tones, no silence)."""
    doc = ASTERISK_TEXT
    if not folder.is_dir() or not doc.is_file():
        raise FileNotFoundError(
            f"no Asterisk prompts at {folder} (and {doc}): apt-get install asterisk-core-sounds-en-wav "
            "asterisk-core-sounds-en, or give --asterisk DIR"
        )
    texts = asterisk_transcripts(doc)
    out = []
    for wav in sorted(folder.rglob("*.wav")):
        name = str(wav.relative_to(folder).with_suffix(""))
        if not name.startswith("silence/") and name in texts and len(_words(texts[name])) >= 2:
            out.append((wav, texts[name]))
    return out


def asterisk_transcripts(doc: Path) -> dict[str, str]:
    """``name: transcript`` lines of core-sounds-en.txt(.gz), bracketed tones left out."""
    import gzip

    opener = gzip.open if doc.suffix == ".gz" else open
    out = {}
    with opener(doc, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = " ".join(text.split())
            if text and not re.fullmatch(r"\[.*\]", text):
                out[name.strip()] = text
    return out


def _pick(pool: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    return [pool[i] for i in rng.permutation(len(pool))[: min(n, len(pool))]]


def _flite(text: str, work: Path) -> np.ndarray:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "flite.wav"
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(path)], check=True, capture_output=True)
    return _decode(str(path))


def _between(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Music (a few chords of sines) or noise, ``seconds`` long, between clips."""
    n = int(seconds * RATE)
    if rng.random() < 0.5:
        return (0.02 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / RATE
    notes = 220 * 2 ** (rng.integers(0, 12, size=3) / 12)
    wave = sum(np.sin(2 * np.pi * f * t) for f in notes) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    return (0.08 * wave).astype(np.float32)


def _find(
    name: str, clips: list, folder: Path, encoder: Any, recognizer: Any, files: int, per_file: int, rng: Any
) -> dict[str, Any]:
    """Long recordings of ``clips``, indexed with speech and without; each clip's words searched."""
    import soundfile as sf

    import indexer
    from retrieval import Engine

    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    texts = [t for t, _ in clips]
    for f in range(files):
        parts, at = [], 0.0
        for text, wave in clips[f * per_file : (f + 1) * per_file]:
            gap = _between(rng, float(rng.uniform(3.0, 15.0)))
            parts.append(gap)
            at += len(gap) / RATE
            parts.append(wave)
            truth.append((_query(text, texts), f"recording-{f}.wav", at, at + len(wave) / RATE))
            at += len(wave) / RATE
        parts.append(_between(rng, 3.0))
        sf.write(folder / f"recording-{f}.wav", np.clip(np.concatenate(parts), -1, 1), RATE, subtype="PCM_16")
    out: dict[str, Any] = {"queries": len(truth)}
    for signal, speech in (("fused", True), ("audio_tower", False)):
        index = folder.parent / f"{name}-{signal}.xmr"
        options = indexer.IndexOptions(workers=1, index_dir=str(index), speech=speech, transcriber=recognizer)
        indexer.index_folder(folder, encoder, options)
        with Engine.open(index, model=encoder) as engine:
            first = [engine.search(q, to="audio", k=1) for q, *_ in truth]
        right = [bool(h) and Path(h[0].path).name == file for h, (_, file, _, _) in zip(first, truth)]
        moment = [
            ok and h[0].start is not None and h[0].start < b and h[0].end > a
            for ok, h, (_, _, a, b) in zip(right, first, truth)
        ]
        out[signal] = {
            "file_R@1": round(100 * float(np.mean(right)), 1),
            "moment_accuracy": round(float(np.mean(moment)), 3),
        }
    return out


def _query(text: str, texts: list[str]) -> str:
    """A few words of what is said, as someone who remembers the recording would type them: the
    four in a row that are rarest among the set's texts (many prompts share "followed by the
    pound key"; nobody looks for one by those)."""
    words = _words(text)
    if len(words) <= 4:
        return " ".join(words)
    df: dict[str, int] = {}
    for other in texts:
        for w in set(_words(other)):
            df[w] = df.get(w, 0) + 1
    weight = [0.0 if w in STOP else np.log(len(texts) / df.get(w, 1)) for w in words]  # common words find nothing
    start = max(range(len(words) - 3), key=lambda i: (sum(weight[i : i + 4]), -i))
    return " ".join(words[start : start + 4])


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _wer(prompts: list, recognizer: Any, n: int, rng: np.random.Generator) -> dict[str, Any]:
    """Word error rate of ``n`` prompts, each transcribed alone (lower case, punctuation dropped)."""
    chosen = rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)
    errors = words = 0
    seconds = 0.0
    started = time.perf_counter()
    for i in chosen:
        path, text = prompts[i]
        found = recognizer.transcribe(path)
        seconds += found.seconds
        heard = _words(" ".join(u.text for u in found.utterances))
        ref = _words(text)
        errors += _edits(ref, heard)
        words += len(ref)
    took = time.perf_counter() - started
    return {"prompts": len(chosen), "words": words, "wer": round(errors / max(words, 1), 4),
            "times_real_time": round(seconds / took, 1)}  # fmt: skip


def _edits(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between word lists."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _speed(recognizer: Any, work: Path, minutes: float, encoder: Any) -> dict[str, Any]:
    """Times real time: the recordings with speech, music alone, silence alone; and indexing a
    folder of music with speech on against off."""
    import soundfile as sf

    import indexer

    rng = np.random.default_rng(7)
    out: dict[str, Any] = {}
    talks = sorted((work / "person").glob("recording-*.wav"))
    took, seconds = 0.0, 0.0
    for path in talks:
        started = time.perf_counter()
        seconds += recognizer.transcribe(path).seconds
        took += time.perf_counter() - started
    out["speech_x_real_time"] = round(seconds / max(took, 1e-9), 1)
    quiet = work / "quiet"
    quiet.mkdir()
    n = int(minutes * 60)
    music = np.concatenate([_between(np.random.default_rng(s), 1.0) if s % 2 else _chord(rng) for s in range(n)])
    sf.write(quiet / "music.wav", music, RATE, subtype="PCM_16")
    sf.write(work / "silence.wav", np.zeros(n * RATE, np.float32), RATE, subtype="PCM_16")
    for name, path in (("music", quiet / "music.wav"), ("silence", work / "silence.wav")):
        started = time.perf_counter()
        found = recognizer.transcribe(path)
        out[f"{name}_x_real_time"] = round(found.seconds / (time.perf_counter() - started), 1)
        out[f"{name}_words"] = len(found.utterances)
    albums = work / "albums"  # the same music as four MP3s: decoding costs more, files overlap
    albums.mkdir()
    for k, part in enumerate(np.array_split(music, 4)):
        sf.write(albums / f"track{k}.mp3", part, RATE, format="MP3")
    for folder, name in ((quiet, "music"), (albums, "mp3s")):
        for speech in (False, True):
            took = []
            for _ in range(3):  # the best of three: other work on the host only slows a run
                shutil.rmtree(folder / ".xmr", ignore_errors=True)
                started = time.perf_counter()
                indexer.index_folder(folder, encoder, indexer.IndexOptions(speech=speech, transcriber=recognizer))
                took.append(time.perf_counter() - started)
            out[f"index_{name}_{'speech' if speech else 'no_speech'}_s"] = round(min(took), 2)
        out[f"index_{name}_speech_over_no_speech"] = round(
            out[f"index_{name}_speech_s"] / out[f"index_{name}_no_speech_s"], 2
        )
    return out


def _chord(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(RATE) / RATE
    notes = 196 * 2 ** (rng.integers(0, 12, size=3) / 12)
    return (0.1 * sum(np.sin(2 * np.pi * f * t) for f in notes)).astype(np.float32)
