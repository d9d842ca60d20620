"""Asterisk voice prompts (Debian ``asterisk-core-sounds-en-wav`` + transcripts from
``asterisk-core-sounds-en``): one human speaker, 8 kHz, split by prompt."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from retrieval.bench.speech import asterisk_transcripts

from .common import caption_key, fetch_deb, run_script, split_of, write_manifests

log = logging.getLogger(__name__)


def build(out: Path, cache: Path) -> dict[str, int]:
    wavs = fetch_deb("asterisk-core-sounds-en-wav", cache) / "usr/share/asterisk/sounds/en_US_f_Allison"
    doc = fetch_deb("asterisk-core-sounds-en", cache) / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    texts = asterisk_transcripts(doc)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for wav in sorted(wavs.rglob("*.wav")):
        name = str(wav.relative_to(wavs).with_suffix(""))
        if name.startswith("silence/") or name not in texts:
            continue
        rows.append({"audio": os.path.relpath(wav, out), "text": texts[name], "source": "asterisk", "prompt": name})
    return write_manifests(out, rows, lambda r: split_of(caption_key(r["text"])))


def main() -> None:
    run_script(__doc__, build)


if __name__ == "__main__":
    main()
