"""Fingerprints in the index (indexer/ingest/build.py's fingerprint phase, the fingerprints table
of indexer/storage): made once per file, after embedding, so an index made before gains them at
its next run without embedding anything again; made again when a file changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import indexer
from indexer.storage.layout import Layout
from indexer.storage.manifest import read_manifest
from indexer.storage.store import Store
from retrieval.models.fingerprint import AUDIO_METHOD, IMAGE_METHOD, Fingerprinter, dihedral, hamming, image_hash
from tests.helpers import touch_later, write_audio, write_image, write_photo


def _store(index: Path) -> Store:
    layout = Layout(index)
    return Store.of_index(layout.db_url(read_manifest(layout).db), read_manifest(layout))


def _vectors(index: Path) -> dict[int, np.ndarray]:
    from indexer.storage.shards import ShardSet

    manifest = read_manifest(Layout(index))
    shards = ShardSet(Layout(index).shards, "image", manifest.dim, manifest.index_type, manifest.shard_size).load()
    ids = np.sort(shards.ids())
    return dict(zip(ids.tolist(), shards.reconstruct(ids)))


def test_an_index_made_before_fingerprints_gains_them_at_the_next_run_without_embedding_again(
    tmp_path: Path, tiny
) -> None:
    root = tmp_path / "media"
    for n in range(4):
        write_image(root / f"p{n}.png", seed=n, size=64)
    write_audio(root / "tone.wav", seed=1, seconds=8.0)
    first = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0))
    assert first.added == 5 and first.fingerprinted == 0
    before = _vectors(root / ".xmr")
    store = _store(root / ".xmr")
    assert store.fingerprints(IMAGE_METHOD) == {}
    store.close()

    fingerprinter = Fingerprinter()
    second = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=fingerprinter))
    assert (second.added, second.updated, second.unchanged) == (0, 0, 5)  # nothing embedded again
    assert second.fingerprinted == (5 if "audio" in fingerprinter.methods else 4)
    after = _vectors(root / ".xmr")
    assert before.keys() == after.keys()
    for item_id, vector in before.items():
        np.testing.assert_array_equal(after[item_id], vector)
    store = _store(root / ".xmr")
    hashes = store.fingerprints(IMAGE_METHOD)
    ids = {Path(r.path).name: r.id for r in store.items()}
    assert sorted(hashes) == sorted(i for name, i in ids.items() if name.endswith(".png"))
    if "audio" in fingerprinter.methods:
        assert len(store.fingerprints(AUDIO_METHOD)[ids["tone.wav"]]) > 4 * 40
    store.close()

    third = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=fingerprinter))
    assert third.fingerprinted == 0  # once per file

    write_image(root / "p0.png", seed=99, size=64)  # changed: fingerprinted again
    touch_later(root / "p0.png")
    fourth = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=fingerprinter))
    assert fourth.updated == 1 and fourth.fingerprinted == 1
    store = _store(root / ".xmr")
    assert store.fingerprints(IMAGE_METHOD)[ids["p0.png"]] != hashes[ids["p0.png"]]
    store.close()


def test_a_file_that_cannot_be_fingerprinted_is_recorded_and_not_tried_again(tmp_path: Path, tiny) -> None:
    root = tmp_path / "media"
    write_image(root / "p.png", seed=1, size=64)
    write_audio(root / "short.wav", seed=1, seconds=1.0)  # too short for Chromaprint
    fingerprinter = Fingerprinter()
    if "audio" not in fingerprinter.methods:
        pytest.skip("fpcalc (libchromaprint-tools) is not installed")
    first = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=fingerprinter))
    assert first.fingerprinted == 1
    store = _store(root / ".xmr")
    assert store.unfingerprinted(fingerprinter.methods) == [] and store.fingerprints(AUDIO_METHOD) == {}
    store.close()
    assert indexer.index_folder(root, tiny, indexer.IndexOptions(fingerprinter=fingerprinter)).fingerprinted == 0


def test_the_hash_of_a_turned_or_mirrored_picture_is_one_of_the_eight_made_from_the_original(
    tmp_path: Path,
) -> None:
    from PIL import Image

    path = write_photo(tmp_path / "p.png", seed=3)
    img = Image.open(path).convert("RGB")
    own = np.frombuffer(image_hash(img), dtype=np.uint8)[None]
    turns = dihedral(own)[0]
    ops = [None, *Image.Transpose]
    for op in ops:
        copy = img if op is None else img.transpose(op)
        h = np.frombuffer(image_hash(copy), dtype=np.uint8)
        assert int(hamming(turns, h).min()) <= 1, op
    other = np.frombuffer(image_hash(Image.open(write_photo(tmp_path / "q.png", seed=4, scene=3))), dtype=np.uint8)
    assert int(hamming(turns, other).min()) > 10
