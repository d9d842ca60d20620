"""Free Spoken Digit Dataset (``../shared/data/fsdd``): 3,000 recordings, six speakers,
split by speaker so the test speaker is never heard in training."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .common import write_manifests

log = logging.getLogger(__name__)
SPLIT_BY_SPEAKER = {
    "george": "train",
    "jackson": "train",
    "lucas": "train",
    "nicolas": "train",
    "yweweler": "val",
    "theo": "test",
}


def build(out: Path, source: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for line in (source / "pairs.jsonl").read_text().splitlines():
        pair = json.loads(line)
        rows.append(
            {
                "audio": os.path.relpath(source / pair["audio"], out),
                "text": pair["text"],
                "source": "fsdd",
                "speaker": pair["speaker"],
            }
        )
    unknown = {r["speaker"] for r in rows} - set(SPLIT_BY_SPEAKER)
    if unknown:
        raise ValueError(f"speakers with no fixed split: {sorted(unknown)}")
    return write_manifests(out, rows, lambda r: SPLIT_BY_SPEAKER[r["speaker"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/fsdd")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(build(args.out, args.source))


if __name__ == "__main__":
    main()
