"""Video (issue 21): a frame every ``frame_seconds`` as image segments, the soundtrack's windows
as audio segments, read with PyAV (FFmpeg inside the wheel) and streamed to scratch files.

Frames are sampled by slot: slot ``n`` spans ``[n * every, (n + 1) * every)`` seconds and is
shown by one of its frames: a keyframe where one falls in it, else its first frame. A first
pass reads the video's packets (no decoding) and decodes only keyframes, one per slot, which
is enough when keyframes come at least every ``every`` seconds (the usual 2 s interval of
streaming encodes). Slots no keyframe reached are filled by a second pass that seeks to them
and decodes forward. The passes also find where the stream really ends, so a truncated file
gives the frames it has, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .segments import SEGMENTS_KEY, SPEECH_KEY, Hearing, ScratchWriter, SegmentingAudio, Segments, segment_limit_reached

log = logging.getLogger(__name__)
FRAME_SECONDS = 2.0  # a frame every 2 s: a moment of a video is found to within that
SEEK_GAP = 10.0  # seconds: a missing slot further ahead than this is sought, not decoded up to
MAX_PIXELS = 8192 * 8192  # a frame larger than this is a damaged header, not a video
MAX_FRAMES = 20_000  # a video's frames sampled at most (11 hours at 2 s)


class VideoDecodeError(ValueError):
    """A file with nothing that decodes as video frames or sound."""


class NoVideoStream(VideoDecodeError):
    """A file of a video format that holds sound alone (no frames to sample)."""


@dataclass
class Frames:
    """What sampling a video's frames found, besides the frames themselves."""

    width: int = 0
    height: int = 0
    duration: float = 0.0  # where the stream really ends (its header's claim when nothing decoded)
    broken: str = ""  # why the stream ended early, when it did
    truncated: bool = False  # the video goes on past the last slot asked for


def sample_frames(
    path: str | os.PathLike, every: float, info: Frames | None = None, max_slots: int | None = None
) -> Iterator[tuple[int, float, Any]]:
    """``(slot, frame time in seconds, RGB PIL image)`` of every slot of ``every`` seconds that
    holds a frame, each once (keyframe slots first, in time order, then the others; see the
    module docstring); only the first ``max_slots`` slots when given. Times count from the
    container's start, as players count them. ``info``, when given, is filled as the video is read.

    Raises:
        VideoDecodeError: not a video FFmpeg can open, or without a video stream.
    """
    import av

    info = info if info is not None else Frames()
    if every <= 0:
        raise ValueError(f"frame interval of {every} s is not positive")
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"cannot open video: {_first_line(exc)}") from exc
    with container:
        if not container.streams.video:
            raise NoVideoStream("the file holds no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if (ctx.width or 0) * (ctx.height or 0) > MAX_PIXELS:
            raise VideoDecodeError(f"video frames of {ctx.width}x{ctx.height} pixels: damaged header?")
        tb = float(stream.time_base)
        origin = start_seconds(container, stream)
        header = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
        info.duration = header
        limit = max_slots if max_slots is not None else math.inf
        filled: set[int] = set()

        def seconds(pts: int) -> float:
            return pts * tb - origin

        def slot_of(frame: Any) -> int | None:
            return None if frame.pts is None else max(0, int(math.floor(seconds(frame.pts) / every)))

        def take(frame: Any, slot: int) -> tuple[int, float, Any]:
            filled.add(slot)
            image = frame.to_image()
            if getattr(frame, "rotation", 0):  # a phone's portrait video: shown upright
                image = image.rotate(frame.rotation, expand=True)
            info.width, info.height = image.size
            return slot, seconds(frame.pts), image

        def wanted(slot: int | None) -> bool:
            return slot is not None and slot < limit and slot not in filled

        # Pass 1: every packet read (cheap), keyframes decoded where their slot lacks a frame.
        end = 0.0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                t = seconds(packet.pts)
                end = max(end, t + (packet.duration or 0) * tb)
                slot = max(0, int(t // every))
                info.truncated = info.truncated or slot >= limit
                if not packet.is_keyframe or not wanted(slot):
                    continue
                try:
                    frames = ctx.decode(packet)
                except av.InvalidDataError as exc:  # one damaged keyframe: the next may decode
                    info.broken = _first_line(exc)
                    continue
                for frame in frames:
                    if wanted(got := slot_of(frame)):
                        yield take(frame, got)
            for frame in ctx.decode(None):
                if wanted(got := slot_of(frame)):
                    yield take(frame, got)
        except av.FFmpegError as exc:
            info.broken = _first_line(exc)
        if header and end > header * 1.5 + 60:
            log.warning(
                "%s: a timestamp at %.0f s lies far past the %.0f s the header gives: ignored", path, end, header
            )
            end = header
        if end > 0:
            if header and end < header - max(1.0, every):
                log.warning(
                    "%s: the video stream ends near %.1f s, before the %.1f s its header promises%s; "
                    "using what is there",
                    path,
                    end,
                    header,
                    f" ({info.broken})" if info.broken else "",
                )
            info.duration = end
        # Pass 2: the slots no keyframe reached, decoded forward from a seek.
        slots = min(int(math.ceil(info.duration / every)), limit)
        missing = (s for s in range(slots) if s not in filled)  # lazy: a slot filled on the way is passed
        yield from _fill(container, stream, every, missing, origin, take, wanted, info)


def start_seconds(container: Any, stream: Any) -> float:
    """Where the container's timeline starts (what players call 0), in seconds."""
    if container.start_time is not None:
        return container.start_time / 1e6
    return float((stream.start_time or 0) * stream.time_base)


def _fill(
    container: Any,
    stream: Any,
    every: float,
    missing: Iterator[int],
    origin: float,
    take: Any,
    wanted: Any,
    info: Frames,
) -> Iterator[tuple[int, float, Any]]:
    """Frames of the ``missing`` slots (in order): decode forward from a seek, seeking again
    across gaps longer than :data:`SEEK_GAP`; a frame on the way fills any later slot still
    ``wanted``."""
    import av

    tb = float(stream.time_base)
    position = None  # the time of the last frame decoded since the last seek
    frames: Any = None
    for slot in missing:
        target = slot * every
        if position is None or position > target or target - position > SEEK_GAP:
            try:
                container.seek(int((target + origin) / tb), stream=stream, backward=True)
                stream.codec_context.flush_buffers()
            except av.FFmpegError as exc:
                info.broken = info.broken or _first_line(exc)
                return
            frames = container.decode(stream)
        try:
            for frame in frames:
                if frame.pts is None:
                    continue
                position = frame.pts * tb - origin
                got = max(0, int(math.floor(position / every)))
                if got >= slot and wanted(got) and position < info.duration:
                    yield take(frame, got)
                if got >= slot:
                    break
            else:
                return  # the stream ended
        except av.FFmpegError as exc:
            info.broken = info.broken or _first_line(exc)
            return


@dataclass(frozen=True)
class SegmentingVideo:
    """The preprocessor decode workers run for a video: no file-level input of its own (a
    video's file vectors are the means of its segments' vectors), and its segments in scratch
    files: frames through the model's image preprocessor (``from_rgb``), the soundtrack's windows
    through its audio one (silent soundtracks are not indexed). Picklable; either
    preprocessor may be None (a model without that tower). Given a ``listen``er, the
    soundtrack is also heard for speech, as :class:`SegmentingAudio` does."""

    image: Any
    audio: Any
    scratch: str
    frame_seconds: float = FRAME_SECONDS
    max_segments: int = MAX_FRAMES
    batch: int = 16
    listen: Any = None  # a speech finder, or None

    def process(self, source: str | os.PathLike) -> tuple[None, dict]:
        meta: dict[str, Any] = {"width": None, "height": None, "duration": None, "sample_rate": None}
        found: list[Segments] = []
        frames = Frames()
        problems = []
        try:
            if self.image is not None:
                try:
                    seg = self.write_frames(source, frames)
                except VideoDecodeError as exc:
                    problems.append(str(exc))
                else:
                    if seg.count:
                        found.append(seg)
                        meta.update(width=frames.width, height=frames.height)
                    else:
                        seg.discard()
                        problems.append(f"no video frame decodes{f' ({frames.broken})' if frames.broken else ''}")
            if self.audio is not None:
                try:
                    seg, rate, heard = self.write_sound(source)
                except (ValueError, EOFError) as exc:  # AudioDecodeError: no audio stream, or none that decodes
                    log.info("%s: soundtrack not indexed: %s", source, exc)
                except OSError as exc:  # a full scratch disk: the frames stand
                    log.warning("%s: soundtrack not indexed: %s", source, exc)
                else:
                    if heard is not None and not seg.truncated:  # in the audio stream's time, as transcripts are
                        meta[SPEECH_KEY] = heard
                    if seg.count:
                        found.append(seg)
                        meta["sample_rate"] = rate
                    else:
                        seg.discard()
                        log.info("%s: soundtrack silent: not indexed", source)
        except BaseException:
            for seg in found:
                seg.discard()
            raise
        if not found:
            raise VideoDecodeError("; ".join(problems) or "no video frame or sound decodes")
        meta["duration"] = round(max(frames.duration, max(max(s.ends) for s in found)), 3)
        meta[SEGMENTS_KEY] = found
        return None, meta

    def write_frames(self, source: str | os.PathLike, info: Frames) -> Segments:
        """A frame every ``frame_seconds``, cropped for the model (uint8), into a scratch file;
        the first ``max_segments`` slots."""
        every = self.frame_seconds
        with ScratchWriter(self.scratch, "image") as out:
            pending: list[tuple[int, np.ndarray]] = []

            def flush() -> None:
                if pending:
                    out.write(np.stack([x for _, x in pending]), [(s * every, (s + 1) * every) for s, _ in pending])
                    pending.clear()

            for slot, _, image in sample_frames(source, every, info, max_slots=self.max_segments):
                pending.append((slot, self.image.crop(image)))
                if len(pending) == self.batch:
                    flush()
            flush()
            if info.truncated:
                segment_limit_reached(source, self.max_segments, self.max_segments * every, "frames")
            seg = out.finish(info.truncated)
        # The last slot ends where the video does.
        ends = [round(min(e, max(info.duration, s + 1e-3)), 3) for s, e in zip(seg.starts, seg.ends)]
        return dataclasses.replace(seg, ends=ends)

    def write_sound(self, source: str | os.PathLike) -> tuple[Segments, int, list[tuple[float, float]] | None]:
        """The soundtrack's windows, as a long audio file's (silence skipped), timed from the
        container's start as the frames are, its rate, and where speech was heard (None: not
        listened for)."""
        import av

        hearing = Hearing(source, self.listen, self.audio.sample_rate) if self.listen is not None else None
        seg = SegmentingAudio(self.audio, self.scratch, max_segments=self.max_segments).write(
            source, keep_silent=False, hearing=hearing
        )
        heard = hearing.finish() if hearing is not None else None
        try:
            with av.open(os.fspath(source)) as container:
                stream = container.streams.audio[0]
                rate = int(stream.rate or stream.codec_context.sample_rate or 0)
                lag = float((stream.start_time or 0) * stream.time_base) - start_seconds(container, stream)
        except BaseException:
            seg.discard()
            raise
        if abs(lag) > 1e-3:  # the sound starts later (or earlier) than the pictures
            seg = dataclasses.replace(
                seg,
                starts=[round(max(0.0, t + lag), 3) for t in seg.starts],
                ends=[round(max(0.0, t + lag), 3) for t in seg.ends],
            )
        return seg, rate, heard


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
