"""Text written in a video's frames (issue 34): a frame every ``every`` seconds (the frames the
video's vectors are made of, :func:`sample_frames`) read by the text reader, and each line
shown over consecutive frames kept once, from the first frame it is seen in to the end of the
last one's slot.

The same line is read a little differently from frame to frame (a letter lost to motion or
compression): lines of consecutive frames are one when they are at least ``SAME_TEXT`` alike
(case and spacing aside), and the line keeps its surest reading and that reading's box. A frame
that has not changed since a neighbouring frame read (its small grey copy differs by under
``STILL`` on average: a slide, a title card, a paused screen) is not read again: it shows what
that frame showed.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .video import Frames, sample_frames

log = logging.getLogger(__name__)
SAME_TEXT = 0.8  # difflib's ratio of two readings that are one line
STILL = 2.0  # mean difference (0-255) of the 32x32 grey copies of two frames that show the same
THUMB = 32

# A line found as the build's reading phase takes it: (start, end, text, confidence, {"box": ...}).
Found = tuple[float, float, str, float, dict]


@dataclass(eq=False)
class _Run:
    """One line over consecutive frames: its surest reading so far."""

    start: float
    last_slot: int
    text: str
    confidence: float
    box: list

    def take(self, line: Any, slot: int) -> None:
        self.last_slot = slot
        if line.confidence > self.confidence:
            self.text, self.confidence, self.box = line.text, line.confidence, _box(line)


def read_video_text(reader: Any, path: str | os.PathLike, every: float) -> tuple[list[Found], int]:
    """The lines written in the video at ``path`` (see the module docstring) and how many of its
    frames were read (the others were still).

    Raises:
        VideoDecodeError: not a video FFmpeg can open, or without a video stream.
    """
    info = Frames()
    shown: dict[int, tuple[float, list]] = {}
    thumbs: dict[int, np.ndarray] = {}
    read = 0
    for slot, time, image in sample_frames(path, every, info):
        thumb = np.asarray(image.convert("L").resize((THUMB, THUMB)), dtype=np.int16)  # 2 KB a slot
        same = next(
            (n for n in (slot - 1, slot + 1) if n in thumbs and float(np.abs(thumbs[n] - thumb).mean()) < STILL),
            None,
        )
        if same is not None:
            lines = shown[same][1]
        else:
            lines = reader.read_image(image)
            read += 1
        thumbs[slot] = thumb
        shown[slot] = (time, lines)
    if info.broken:
        log.warning("%s: video broken after %.1f s (%s): text read up to there", path, info.duration, info.broken)
    return merged(shown, every, info.duration), read


def merged(shown: dict[int, tuple[float, list]], every: float, duration: float) -> list[Found]:
    """Lines of each slot's frame (``slot: (frame time, lines)``) as spans over time: a line in
    consecutive slots once (see the module docstring), in the order first seen."""
    done: list[_Run] = []
    open_runs: list[_Run] = []
    last = None
    for slot in sorted(shown):
        time, lines = shown[slot]
        if last is None or slot != last + 1:  # a slot without a frame ends every line
            done += open_runs
            open_runs = []
        going: list[_Run] = []
        for line in lines:
            key = _key(line.text)
            best = max(
                (r for r in open_runs if r not in going),
                key=lambda r: difflib.SequenceMatcher(None, _key(r.text), key).ratio(),
                default=None,
            )
            if best is not None and difflib.SequenceMatcher(None, _key(best.text), key).ratio() >= SAME_TEXT:
                best.take(line, slot)
                going.append(best)
            else:
                going.append(_Run(time, slot, line.text, line.confidence, _box(line)))
        done += [r for r in open_runs if r not in going]
        open_runs = going
        last = slot
    done += open_runs
    end_of = duration if duration > 0 else math.inf
    return [
        (round(r.start, 3), round(min((r.last_slot + 1) * every, end_of), 3), r.text, r.confidence, {"box": r.box})
        for r in sorted(done, key=lambda r: (r.start, min(y for _, y in r.box)))
    ]


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _box(line: Any) -> list:
    return [[float(x), float(y)] for x, y in line.box]
