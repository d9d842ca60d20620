"""Real media files for the tests: images written by Pillow, audio by soundfile, text files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

RATE = 16_000


def write_image(path: Path, seed: int, size: int = 48, fmt: str | None = None) -> Path:
    """A distinct image per seed: a seeded colour field with a seeded stripe pattern."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    pixels = np.tile(base, (size, size, 1)).astype(np.int32)
    stripe = int(rng.integers(2, 8))
    pixels[::stripe] = rng.integers(0, 256, size=3)
    pixels += rng.integers(-20, 20, size=pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format=fmt)
    return path


def write_photo(path: Path, seed: int, scene: int | None = None, size: tuple[int, int] = (320, 240)) -> Path:
    """A photo-like picture per seed (:func:`retrieval.bench.duplicates.synthetic_photo`):
    pictures of one ``scene`` share its colours, each has shapes and grain of its own."""
    from retrieval.bench.duplicates import synthetic_photo

    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_photo(seed, seed if scene is None else scene, size).save(path)
    return path


def write_page(
    path: Path, lines: list[str], size: tuple[int, int] = (1600, 1200), font_size: int = 64, top: int = 200
) -> Path:
    """A picture of printed ``lines`` (dark on paper, Pillow's own scalable font), one every
    ``2.5 * font_size`` pixels from ``top``, 120 pixels from the left."""
    from PIL import ImageDraw, ImageFont

    page = Image.new("RGB", size, (240, 235, 220))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=font_size)
    for n, line in enumerate(lines):
        draw.text((120, top + int(2.5 * font_size) * n), line, fill=(20, 20, 30), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)
    return path


def ocr_reader():  # -> retrieval.models.ocr.TextReader
    """The text recogniser; skips (fails under CI, which installs the extra ocr) without it."""
    import pytest

    from retrieval.models.ocr import OcrUnavailable, TextReader

    try:
        reader = TextReader()
        reader.load()  # OpenCV loads libGL here: without it, the reason
        return reader
    except OcrUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


def write_audio(path: Path, seed: int, seconds: float = 1.0, fmt: str | None = None) -> Path:
    """A distinct clip per seed: two seeded tones and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f1, f2 = rng.uniform(150, 3000, size=2)
    wave = 0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE, format=fmt)
    return path


def write_m4a(path: Path, wave: np.ndarray, rate: int = 44100, channels: int = 2) -> Path:
    """AAC in an MP4 container (.m4a), written by PyAV (FFmpeg's own AAC encoder)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "stereo" if channels == 2 else "mono"
    data = np.ascontiguousarray(np.tile(np.asarray(wave, np.float32)[None], (channels, 1)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout=layout)
        for start in range(0, data.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, start : start + 1024]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


WORDS = ["dog", "beach", "rain", "bell", "piano", "forest", "city", "night", "river", "bird", "car", "snow"]


def make_media(root: Path, images: int = 6, audio: int = 4, texts: int = 3, seed: int = 0) -> Path:
    """A small media folder: ``images`` PNG/JPEG files, ``audio`` WAV/FLAC clips, ``texts`` notes."""
    for i in range(images):
        write_image(root / ("photos" if i % 2 else "pics") / f"img{i}.{'png' if i % 3 else 'jpg'}", seed * 1000 + i)
    for i in range(audio):
        write_audio(root / "sounds" / f"clip{i}.{'wav' if i % 2 else 'flac'}", seed * 1000 + 500 + i)
    for i in range(texts):
        words = [WORDS[(seed + i * 3 + j) % len(WORDS)] for j in range(4)]
        write_text(root / "notes" / f"note{i}.txt", "a note about " + " ".join(words) + "\n")
    return root


def touch_later(path: Path, seconds: float = 10.0) -> None:
    """Move a file's mtime forward (so a rewrite within the same clock tick still looks changed)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


def heavy_modules_loaded(_: object = None) -> list[str]:
    """Which of the heavy libraries this process has imported (run inside a decode worker)."""
    import sys

    return sorted(m for m in ("torch", "transformers", "open_clip", "torchvision") if m in sys.modules)


class Faulty:
    """A preprocessor that fails for real on files whose name holds a marker, and otherwise
    runs the real one: ``crash`` segfaults the worker, ``hang`` sleeps for ever without reading,
    ``raise`` raises a KeyError, ``slow`` reads its file a byte at a time for ``slow_seconds``
    (progress without a result). Picklable, so decode workers run it."""

    def __init__(self, inner, slow_seconds: float = 4.0) -> None:  # noqa: ANN001
        self.inner, self.slow_seconds = inner, slow_seconds

    def process(self, source):  # noqa: ANN001, ANN201
        import ctypes
        import time

        name = os.path.basename(str(source))
        if "crash" in name:
            ctypes.string_at(0)  # SIGSEGV, as a codec's bad pointer would
        if "hang" in name:
            while True:
                time.sleep(1)
        if "raise" in name:
            raise KeyError("a decoder bug")
        if "slow" in name:
            end = time.monotonic() + self.slow_seconds
            with open(source, "rb", buffering=0) as f:
                while time.monotonic() < end:
                    if not f.read(1):
                        f.seek(0)
                    time.sleep(0.05)
        return self.inner.process(source)


class WithFaults:
    """An encoder whose image preprocessing is :class:`Faulty`; everything else is ``model``'s."""

    def __init__(self, model, slow_seconds: float = 4.0) -> None:  # noqa: ANN001
        self._model = model
        self.preprocess_image = Faulty(model.preprocess_image, slow_seconds)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)


from retrieval.bench.media import write_video  # noqa: E402,F401 - the tests' video files, as the benchmark's


def faulty_tiny() -> WithFaults:
    """xmr-tiny with :class:`Faulty` image preprocessing, built where it is called (a Ray worker)."""
    from retrieval import create_model

    return WithFaults(create_model("xmr-tiny", device="cpu"))


def speak(path: Path, text: str, voice: str = "en-us", before: float = 0.0, after: float = 0.0) -> Path:
    """``text`` spoken by espeak-ng (a voice xmr never trained on), with ``before``/``after``
    seconds of silence around it, as a 16 kHz mono WAV. Skips (fails under CI) without espeak-ng."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but espeak-ng is not installed (apt-get install espeak-ng)")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(raw), text], check=True, capture_output=True)
    wave, rate = sf.read(raw, dtype="float32")
    raw.unlink()
    from retrieval.models.audio import resample

    wave = resample(wave, rate, 16000)
    silence = [np.zeros(int(s * 16000), np.float32) for s in (before, after)]
    sf.write(path, np.concatenate([silence[0], wave, silence[1]]), 16000)
    return path


def killed_at(child: str, root: Path, crash: str) -> None:
    """Run the Python source ``child`` (``sys.argv[1]``: ``root``) in a new process with
    ``XMR_CRASH_AT=crash``, and see it killed there (SIGKILL), not end otherwise."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", child, str(root)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "XMR_CRASH_AT": crash},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr


class CountedJobs:
    """Decode jobs (``(key, path, "image", pre)``) for ``files``, counting how many were taken."""

    def __init__(self, files: list[Path], pre: object) -> None:
        self.files, self.pre, self.taken = files, pre, 0

    def __iter__(self):  # noqa: ANN204
        for n, path in enumerate(self.files):
            self.taken += 1
            yield (n, str(path), "image", self.pre)
