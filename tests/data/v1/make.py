"""Make the schema-v1 fixture: an index built by xmr at commit 3e1cad1 (schema version 1),
on SQLite and on PostgreSQL, for the migration tests (tests/test_migrate.py).

    git worktree add /tmp/v1 3e1cad1 && cd /tmp/v1 && python /path/to/tests/data/v1/make.py OUT

Writes OUT/media (the indexed folder), OUT/sqlite (its index folder), OUT/postgres (the
index folder of the same media indexed into PostgreSQL) and OUT/postgres.sql (pg_dump of that
database). The encoder is xmr-tiny with a fixed weights hash, so the fixture does not depend
on how torch initialises the tiny model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
import indexer  # noqa: E402
import retrieval  # noqa: E402
from tests.helpers import make_media  # noqa: E402

DB = "xmr_v1_fixture"


class Fixed:
    """xmr-tiny under a fixed weights hash."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self._model = model
        self.weights_hash = "v1-fixture"

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    media = make_media(out / "media", images=6, audio=2, texts=2, seed=7)
    texts = out / "media-labels.txt"
    texts.write_text("a red square\na blue stripe\n", encoding="utf-8")
    enc = Fixed(retrieval.create_model("xmr-tiny", device="cpu"))
    indexer.index_folder(media, enc, indexer.IndexOptions(workers=0, index_dir=str(out / "sqlite"), texts=[str(texts)]))
    subprocess.run(["dropdb", "--if-exists", DB], check=True)
    subprocess.run(["createdb", DB], check=True)
    url = f"postgresql+psycopg:///{DB}"
    indexer.index_folder(media, enc, indexer.IndexOptions(workers=0, index_dir=str(out / "postgres"), db_url=url, texts=[str(texts)]))
    dump = subprocess.run(["pg_dump", "--inserts", "--no-owner", "--no-privileges", DB], check=True, capture_output=True, text=True).stdout
    (out / "postgres.sql").write_text(dump, encoding="utf-8")
    subprocess.run(["dropdb", DB], check=True)
    for lock in out.glob("*/lock"):
        lock.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
