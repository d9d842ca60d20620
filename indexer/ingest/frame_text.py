"""Text written in a video's frames (issue 34): a frame every ``every`` seconds (the frames the
video's vectors are made of, :func:`sample_frames`, at most as many) read by the text reader,
and each line shown over consecutive frames kept once, from the first frame it is seen in to
the end of the last one's slot.

The same line is read a little differently from frame to frame (a letter lost to motion or
compression): lines of consecutive frames are one when they are at least ``SAME_TEXT`` alike
(case and spacing aside) and hold the same numbers ("Slide 9" and "Slide 10" are two lines),
the nearest box taken where two are alike; the line keeps its surest reading and that reading's
box. A frame that shows what a neighbouring frame read showed (a slide, a title card, a paused
screen) is not read again: no 8x8 block of its 64x64 grey copy differs from that read frame's
by ``STILL`` or more on average (a subtitle appearing moves its blocks by 10 and more; a frame
compressed twice, by about 1). Frames are compared with the frame read, not with their
neighbour, so a slow fade does not creep past the test.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .video import MAX_FRAMES, Frames, NoVideoStream, sample_frames

log = logging.getLogger(__name__)
SAME_TEXT = 0.8  # difflib's ratio of two readings that are one line
STILL = 4.0  # the largest mean difference (0-255) of an 8x8 block between frames that show the same
THUMB, BLOCK = 64, 8
_NUMBER = re.compile(r"\d+")

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


def read_video_text(
    reader: Any,
    path: str | os.PathLike,
    every: float,
    stop: Callable[[], bool] = lambda: False,
    max_slots: int = MAX_FRAMES,
) -> tuple[list[Found], int]:
    """The lines written in the video at ``path`` (see the module docstring; none in a file of
    sound alone) and how many of its frames were read (the others were still). ``stop()`` true
    ends the reading early, with the lines found so far.

    Raises:
        VideoDecodeError: not a video FFmpeg can open.
    """
    info = Frames()
    shown: dict[int, tuple[float, list]] = {}
    seen: dict[int, np.ndarray] = {}  # slot: the small copy of the frame read for it
    read = 0
    try:
        for slot, time, image in sample_frames(path, every, info, max_slots=max_slots):
            if stop():
                break
            thumb = np.asarray(image.convert("L").resize((THUMB, THUMB)), dtype=np.int16)
            same = next((n for n in (slot - 1, slot + 1) if n in seen and _still(seen[n], thumb)), None)
            if same is not None:
                shown[slot], seen[slot] = (time, shown[same][1]), seen[same]
            else:
                shown[slot], seen[slot] = (time, reader.read_image(image)), thumb
                read += 1
    except NoVideoStream:
        return [], 0
    if info.broken:
        log.warning("%s: video broken after %.1f s (%s): text read up to there", path, info.duration, info.broken)
    return merged(shown, every, info.duration), read


def _still(a: np.ndarray, b: np.ndarray) -> bool:
    blocks = np.abs(a - b).reshape(THUMB // BLOCK, BLOCK, THUMB // BLOCK, BLOCK).mean(axis=(1, 3))
    return float(blocks.max()) < STILL


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
            key, numbers, centre = _key(line.text), _NUMBER.findall(line.text), _centre(line.box)
            alike = [
                (difflib.SequenceMatcher(None, _key(r.text), key).ratio(), -math.dist(_centre(r.box), centre), n)
                for n, r in enumerate(open_runs)
                if r not in going and _NUMBER.findall(r.text) == numbers
            ]
            best = max(alike, default=None)
            if best is not None and best[0] >= SAME_TEXT:
                run = open_runs[best[2]]
                run.take(line, slot)
                going.append(run)
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


def _centre(box: Any) -> tuple[float, float]:
    return (sum(float(x) for x, _ in box) / len(box), sum(float(y) for _, y in box) / len(box))


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _box(line: Any) -> list:
    return [[float(x), float(y)] for x, y in line.box]
