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


def test_a_framed_copy_hashes_like_its_original_once_its_flat_borders_are_trimmed(tmp_path: Path) -> None:
    """A picture shown in a screenshot-like window (a dark title bar, light margins; saved as
    JPEG, whose ringing blurs the window's edge): the window is trimmed off, the picture kept."""
    import io

    from PIL import Image

    from retrieval.bench.duplicates import image_copy
    from retrieval.models.fingerprint import image_fingerprint, trim_box
    from retrieval.search.duplicates import HASH_MAX_BITS

    img = Image.open(write_photo(tmp_path / "p.png", seed=5, size=(160, 120))).convert("RGB")
    buffer = io.BytesIO()
    image_copy(img, "border").save(buffer, format="JPEG", quality=90)
    framed = Image.open(buffer).convert("RGB")
    left, top, right, bottom = trim_box(framed)
    pad, bar = 8, 16  # image_copy's window around a 160x120 picture, at (8, 16)
    # the window is gone (JPEG's ringing may leave a line of it)
    assert abs(left - pad) <= 1 and abs(top - bar) <= 1 and right <= pad + 161 and bottom <= bar + 121
    assert (right - left) * (bottom - top) >= 0.8 * 160 * 120  # the picture is kept (its flat ground may go too)
    own = np.frombuffer(image_fingerprint(img)[:16], dtype=np.uint8).reshape(2, 8)
    whole, trimmed = np.frombuffer(image_fingerprint(framed)[:16], dtype=np.uint8).reshape(2, 8)
    assert int(hamming(own[:, None], dihedral(trimmed[None])[0]).min()) <= HASH_MAX_BITS
    assert int(hamming(own[:, None], dihedral(whole[None])[0]).min()) > HASH_MAX_BITS  # the whole copy's hash misses
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    assert trim_box(noisy) == (0, 0, 80, 60)  # a picture without a flat border keeps all of itself


def test_pictures_alike_in_grey_but_not_in_colour_are_not_inside_each_other(tmp_path: Path) -> None:
    """The thumbnail match: a crop, a grey and a captioned copy (saved as JPEG) lie inside the
    original, whatever its colours; the same picture with its colours changed but its
    brightness kept (grey thumbnails alike) does not."""
    import io

    from PIL import Image

    from retrieval.bench.duplicates import image_copy, synthetic_photo
    from retrieval.models.fingerprint import contained, image_fingerprint

    for seed in range(12):  # ten scenes' colours, strong ones among them
        img = synthetic_photo(seed, scene=seed % 10, size=(96, 96) if seed % 2 else (320, 240))
        own = image_fingerprint(img)
        for kind in ("crop85", "grey", "caption"):
            saved = io.BytesIO()
            image_copy(img, kind).save(saved, format="JPEG", quality=90)
            copy = image_fingerprint(Image.open(saved).convert("RGB"))
            assert max(contained(copy, own), contained(own, copy)) >= 0.97, (seed, kind)
        y, cb, cr = img.convert("YCbCr").split()
        recoloured = image_fingerprint(Image.merge("YCbCr", (y, cr, cb)).convert("RGB"))  # blue and red swapped
        assert max(contained(recoloured, own), contained(own, recoloured)) < 0.5, seed


def test_the_hash_search_of_a_few_new_pictures_finds_what_comparing_every_pair_finds() -> None:
    """:func:`hash_pairs` for a few asked rows (their turns against the hashes as held) against
    the obvious reference: every pair's 2x2 hashes, each against the other's eight turns."""
    from retrieval.models.fingerprint import hash_pairs

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(600, 2, 8), dtype=np.uint8)
    flips = rng.integers(0, 64, size=(200, 3))
    for n in range(200):  # the last 200 near earlier ones, by their whole or trimmed hash, turned or not
        bits = np.unpackbits(dihedral(hashes[n, :1])[0, n % 8])
        bits[flips[n]] ^= 1
        hashes[400 + n, n % 2] = np.packbits(bits)
    asked = np.arange(380, 600)
    turned = dihedral(hashes.reshape(-1, 8)).reshape(600, 2, 8, 8)
    reference = {}
    for a in asked.tolist():
        bits = hamming(hashes[a][:, None, None, :], turned[:, None]).reshape(600, -1).min(axis=1)
        for b in np.flatnonzero(bits <= 6).tolist():
            if b != a:
                reference[(min(a, b), max(a, b))] = int(bits[b])
    assert len(reference) >= 200
    assert hash_pairs(hashes, 6, asked) == reference
    assert {k: v for k, v in hash_pairs(hashes, 6).items() if k[0] in asked or k[1] in asked} == reference


def test_fingerprints_made_by_an_older_method_are_made_again_at_the_next_run(tmp_path: Path, tiny) -> None:
    """The picture fingerprint of before the trimmed hash and colour thumbnail (method
    "dct64-thumb48-v1") is replaced by the present one, without embedding again."""

    class Older(Fingerprinter):
        def __init__(self) -> None:
            super().__init__(audio=False)
            self.methods = {"image": "dct64-thumb48-v1"}

    root = tmp_path / "media"
    for n in range(3):
        write_photo(root / f"p{n}.png", seed=n)
    first = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=Older()))
    assert first.fingerprinted == 3
    second = indexer.index_folder(root, tiny, indexer.IndexOptions(workers=0, fingerprinter=Fingerprinter(audio=False)))
    assert (second.unchanged, second.fingerprinted) == (3, 3)
    store = _store(root / ".xmr")
    assert len(store.fingerprints(IMAGE_METHOD)) == 3 and store.fingerprints("dct64-thumb48-v1") == {}
    store.close()


def test_new_copies_are_named_with_their_hashes_read_from_sqlite_and_postgresql(tmp_path: Path, tiny, db_url) -> None:
    """The run's copy check reads only the stored fingerprints' first bytes (SQL ``substr`` of
    the blob, on both databases)."""
    from PIL import Image

    from retrieval.bench.duplicates import image_copy

    root = tmp_path / "media"
    lake = Image.open(write_photo(root / "lake.png", seed=21)).convert("RGB")
    write_photo(root / "hill.png", seed=22)
    options = indexer.IndexOptions(workers=0, db_url=db_url, fingerprinter=Fingerprinter(audio=False))
    assert indexer.index_folder(root, tiny, options).copies == []
    image_copy(lake, "mirror").save(root / "lake-mirrored.jpg", quality=90)
    copies = indexer.index_folder(root, tiny, options).copies
    assert [(c["path"], c["copy_of"]) for c in copies] == [("lake-mirrored.jpg", "lake.png")]
