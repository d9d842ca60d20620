"""Media files the benchmarks (and tests) make: videos of given pictures and sound, by PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(
    path: Path,
    pictures: list[np.ndarray],
    seconds_each: float | list[float] = 1.0,
    fps: int = 10,
    gop: int | None = None,
    wave: np.ndarray | None = None,
    rate: int = 16000,
    codec: str | None = None,
) -> Path:
    """A video of ``pictures`` (``[H, W, 3]`` uint8, even sides) shown ``seconds_each`` each (one
    number, or one per picture), written by PyAV: H.264 in .mp4/.mov/.mkv, VP9 in .webm; a
    keyframe every ``gop`` frames (default: one per picture, when all show equally long) and no
    others; ``wave`` (mono float32 at ``rate``) as its AAC (Opus in .webm) soundtrack."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    webm = path.suffix == ".webm"
    codec = codec or ("libvpx-vp9" if webm else "libx264")
    each = seconds_each if isinstance(seconds_each, list) else [seconds_each] * len(pictures)
    counts = [max(1, int(round(s * fps))) for s in each]
    height, width = pictures[0].shape[:2]
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop or counts[0]
        if codec == "libx264":
            video.options = {"preset": "ultrafast", "tune": "stillimage", "sc_threshold": "0"}
        elif codec == "libvpx-vp9":
            video.options = {"deadline": "realtime", "cpu-used": "8"}
        sound = out.add_stream("libopus" if webm else "aac", rate=48000 if webm else rate) if wave is not None else None
        n = 0
        for picture, per in zip(pictures, counts):
            for _ in range(per):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts = n
                n += 1
                for packet in video.encode(frame):
                    out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = np.asarray(wave, np.float32)
            if webm and rate != 48000:
                import soxr

                samples = soxr.resample(samples, rate, 48000).astype(np.float32)
            srate = sound.codec_context.sample_rate
            step = 960 if webm else 1024
            pts = 0
            for start in range(0, len(samples), step):
                chunk = np.ascontiguousarray(samples[start : start + step][None])
                if webm and chunk.shape[1] < step:
                    chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
                frame = av.AudioFrame.from_ndarray(chunk, format="flt" if webm else "fltp", layout="mono")
                frame.sample_rate = srate
                frame.pts = pts
                pts += chunk.shape[1]
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def write_moving_video(
    path: Path, seconds: float, width: int = 1280, height: int = 720, fps: int = 30, gop: int = 60
) -> Path:
    """A camera-like H.264 video made frame by frame (never held whole): a noisy texture panning
    under moving bars, a keyframe every ``gop`` frames, and a stereo AAC soundtrack at 44.1 kHz.
    Encoded with x264's ``veryfast`` preset, so its bitrate is that of real footage, not of a
    still picture."""
    import av

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (height // 8 + 2, (width + 4 * width) // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(blocks, np.ones((8, 8, 1), np.uint8))
    texture = np.clip(texture.astype(np.int16) + rng.integers(-12, 12, texture.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop
        video.options = {"preset": "veryfast", "sc_threshold": "0", "crf": "23"}
        sound = out.add_stream("aac", rate=rate, layout="stereo")
        frames = int(round(seconds * fps))
        per_frame = rate // fps
        t = np.arange(per_frame) / rate
        apts = 0
        for n in range(frames):
            x = (n * 4) % (texture.shape[1] - width)
            picture = texture[:height, x : x + width].copy()
            bar = (n * 7) % width
            picture[:, bar : bar + 40] = (255 - picture[:, bar : bar + 40]) // 2
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = n
            for packet in video.encode(frame):
                out.mux(packet)
            tone = 0.2 * np.sin(2 * np.pi * (220 + (n // fps) % 12 * 40) * (t + n / fps))
            noise = 0.05 * rng.standard_normal(per_frame)
            wave = np.ascontiguousarray(np.tile((tone + noise).astype(np.float32)[None], (2, 1)))
            audio = av.AudioFrame.from_ndarray(wave, format="fltp", layout="stereo")
            audio.sample_rate = rate
            audio.pts = apts
            apts += per_frame
            for packet in sound.encode(audio):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG that declares ``width x height`` pixels but holds almost no data (a few hundred
    bytes): what a decoder's pixel limit must refuse from the header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
