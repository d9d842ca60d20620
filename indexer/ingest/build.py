"""Index a media folder: scan, detect changes, decode in workers, embed, write shards + SQL.

Consistency, whatever kills the process: vectors are written to the shards (atomically)
before the SQL rows that point at them are committed, and every run starts by reconciling
the two (vectors without a row are dropped; rows without a vector are re-embedded). Ids are
allocated here (max id + 1) and are both the SQL primary key and the FAISS id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..storage import retype
from ..storage.autotype import AUTO, SEGMENT_FACTORY, Choice, choose, default_budget, fixed
from ..storage.errors import OptionError
from ..storage.layout import INDEX_FOLDER, IndexLock, IndexMismatchError, Layout, MassRemovalError
from ..storage.manifest import Manifest, Reindexing, read_manifest, write_manifest
from ..storage.paths import escape_path, unescape_path
from ..storage.schema import FILE, INDEXED, MODALITIES, TEXT_LINE, VIDEO, Item, vector_modalities
from ..storage.shards import ShardSet
from ..storage.store import Store, StoreError, new_index_uuid
from ..storage.writer import IndexWriter, RowChange, VectorChange
from .ahead import read_ahead
from .decode import Decoded, crops_of, file_hash
from .frame_text import read_video_text
from .scan import LINKS, Found, Skipped, walk
from .segments import SEGMENTS_KEY, SPEECH_KEY, EncodedSegments, SegmentingAudio, Segments, encode_segments
from .texts import read_texts
from .video import FRAME_SECONDS, SegmentingVideo
from .workers import DecodePool, decode_in_process

log = logging.getLogger(__name__)
DEFAULT_MODEL = "xmr-mini"


class EncoderLike(Protocol):
    """What the indexer needs of a model (``retrieval.Encoder`` has it all): identity, the
    torch-free preprocessors its decode workers run (None for a modality it lacks; the audio one
    with ``window_seconds``, ``sample_rate``, ``segment_windows`` and ``fit`` for the moments of
    long files; the image one with ``crop`` and ``normalize`` for video frames), and the forward passes on
    their output."""

    name: str
    weights_hash: str
    embed_dim: int
    modalities: tuple[str, ...]
    preprocess_image: Any
    preprocess_audio: Any

    def warm(self, modalities: Sequence[str]) -> None: ...

    def encode_text(self, texts: list[str]) -> np.ndarray: ...

    def encode_image(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_audio_features(self, features: list[np.ndarray]) -> np.ndarray: ...


def encode_batch(encoder: EncoderLike, modality: str, inputs: list, crops: bool = False) -> np.ndarray:
    """Vectors of one batch of decoded inputs: image pixels (``crops``: uint8 crops from
    :class:`~indexer.ingest.decode.Crops`, normalised here), audio features or texts."""
    if modality == "image":
        pixels = np.stack(inputs)
        if crops:
            pixels = encoder.preprocess_image.normalize(pixels)
        return encoder.encode_image(pixels)
    if modality == "audio":
        return encoder.encode_audio_features(inputs)
    return encoder.encode_text(inputs)


@dataclass
class IndexOptions:
    """How to index (the ``xmr index`` options)."""

    index_dir: str | None = None
    db_url: str | None = None
    # exclude, texts and links: None (unset) takes what the index recorded, else none / "inside";
    # a value given (even an empty list) replaces the record for this and later runs.
    exclude: list[str] | None = None
    texts: list[str] | None = None
    batch_size: int = 64
    workers: int | None = None
    shard_size: int = 250_000
    index_type: str = AUTO  # a FAISS factory string, or auto: chosen by size and max_memory (indexer.storage.autotype)
    rebuild: bool = False
    wait: float = 0.0
    checkpoint_items: int = 4096
    checkpoint_seconds: float = 60.0
    links: str | None = None  # symbolic links: inside | follow | none (see scan.walk); None: as recorded
    decode_timeout: float = 120.0  # seconds a decoder may go without progress before it is stopped
    retry_failed: bool = False  # decode again the files whose decoder crashed or hung before
    allow_mass_removal: bool = False  # remove even when more than half of an index of 20+ items is gone
    prune_unseen: bool = False  # remove the rows under folders that cannot be read and links not followed
    frame_seconds: float | None = None  # a video's frames, one every this many seconds (None: as before, else 2)
    ray: str | None = None  # decode and embed on a Ray cluster: "auto" or its address (see ray_embed)
    encoder_factory: Callable[[], Any] | None = None  # builds the same encoder on each Ray worker (picklable)
    max_memory: int | None = None  # bytes of RAM search may use, for auto (None: as recorded, else a quarter of RAM)
    reindex_type: str | None = None  # rebuild the shards as this type (or auto) from their vectors first
    # Speech in audio and video transcribed (None: as recorded, else on) by ``transcriber`` (a
    # retrieval.models.speech.SpeechRecognizer, or anything with its ``source``, ``model_id`` and
    # ``transcribe(path)``); without one nothing is transcribed. ``speech_model``: the model
    # folder the transcriber was made from, recorded so later runs make the same one.
    speech: bool | None = None
    transcriber: Any = None
    speech_model: str | None = None
    # Text in pictures read (None: as recorded, else on) by ``text_reader`` (a
    # retrieval.models.ocr.TextReader, or anything with its ``source``, ``model_id`` and
    # ``read(path)`` giving lines with ``text``, ``box`` and ``confidence``); without one none is read.
    ocr: bool | None = None
    text_reader: Any = None
    # Copies found by fingerprints (xmr duplicates): each file of a modality in
    # ``fingerprinter.methods`` ({modality: method}) fingerprinted once by
    # ``fingerprinter.fingerprint(path, modality)`` (bytes; a retrieval.models.fingerprint.Fingerprinter),
    # after embedding: an index made before gains them at its next run. None: none made. When it
    # has ``copies(new_ids, {id: head bytes})`` (and ``head``, the bytes it reads), the pictures
    # this run added are compared with the index's as they arrive (``Summary.copies``).
    fingerprinter: Any = None

    def recorded(self) -> dict[str, Any]:
        """The options that decide what the index holds, as the manifest records them."""
        return (
            {
                "exclude": list(self.exclude or []),
                "texts": [os.path.abspath(os.path.expanduser(t)) for t in self.texts or []],
                "links": self.links or RECORDED_DEFAULTS["links"],
            }
            | ({"frame_seconds": self.frame_seconds} if self.frame_seconds else {})
            | ({"speech": False} if self.speech is False else {})
            | ({"ocr": False} if self.ocr is False else {})
            | ({"speech_model": self.speech_model} if self.speech_model else {})
        )

    def with_recorded(self, recorded: dict[str, Any]) -> tuple[IndexOptions, dict[str, Any]]:
        """These options with each recorded one left unset taken from ``recorded`` (the
        manifest's ``"options"``), and the recorded values so taken that differ from the
        defaults (what the run's summary reports). A recorded texts file that is gone is
        dropped, with a warning: its items leave the index."""
        chosen, used = {}, {}
        for name, default in RECORDED_DEFAULTS.items():
            value = getattr(self, name)
            if value is None:
                value = recorded.get(name, default)
                if name == "texts":
                    for gone in [t for t in value if not os.path.isfile(t)]:
                        log.warning("texts file %s, recorded by an earlier run, is gone: its items are removed", gone)
                    value = [t for t in value if os.path.isfile(t)]
                if value != default:
                    used[name] = value
            chosen[name] = list(value) if isinstance(value, list) else value
        return replace(self, **chosen), used


MASS_REMOVAL_MIN_ITEMS = 20
# The options an index records that a later run takes when it is not given them (besides
# max_memory and frame_seconds, kept beside them), with the value of an index that never had them.
RECORDED_DEFAULTS: dict[str, Any] = {
    "exclude": [],
    "texts": [],
    "links": "inside",
    "speech": True,
    "speech_model": None,
    "ocr": True,
}


@dataclass
class Summary:
    """What a run did (the ``--json`` output of ``xmr index``)."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    kept: int = 0  # indexed files under folders that could not be listed (or links not followed): kept, not removed
    skipped: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    segments: int = 0  # moments of long files the index holds (each with its own vector)
    transcribed: int = 0  # files whose speech this run transcribed (with or without words found)
    speech_seconds: float = 0.0  # seconds of audio those files held
    pictures_read: int = 0  # pictures whose text this run read (with or without text found)
    videos_read: int = 0  # videos whose frames' text this run read
    frames_read: int = 0  # their frames read (a frame like its neighbour is not read again)
    text_lines: int = 0  # lines of text read in them
    fingerprinted: int = 0  # files this run fingerprinted (to find copies)
    # Pictures this run added that are copies of pictures in the index (their perceptual hashes
    # alike, whichever way turned; ``xmr duplicates`` finds cropped and captioned ones too):
    # {"path", "copy_of", "bits"} (paths under the folder; hash bits apart, of 64).
    copies: list[dict] = field(default_factory=list)
    recorded_options: dict[str, Any] = field(default_factory=dict)  # options not given, taken from the index
    interrupted: bool = False
    seconds: float = 0.0
    index: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Work:
    """One item to embed: a new or changed file, or a text line."""

    item_id: int
    modality: str
    new: bool
    values: dict  # column values to write once its vector is stored
    path: str | None = None  # file to decode; None for text lines
    text: str | None = None
    rel: str = ""  # the stored (escaped, relative) path of a file
    old_hash: str | None = None  # an indexed file's content hash before this run (same: its words stay)


ProgressFn = Callable[[int, int], None]


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


def notable_options(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded options (a manifest's ``"options"``) whose values differ from those of an
    index never given them: what ``xmr info`` lists."""
    defaults = RECORDED_DEFAULTS | {"frame_seconds": FRAME_SECONDS}
    return {k: v for k, v in recorded.items() if k in defaults and v != defaults[k]}


def index_layout(root: str | os.PathLike, options: IndexOptions) -> Layout:
    """Where the index of ``root`` lives: ``options.index_dir``, else ``root/.xmr``."""
    if options.index_dir:
        return Layout(Path(options.index_dir).expanduser().resolve())
    return Layout(Path(os.path.abspath(os.path.expanduser(os.fspath(root)))) / INDEX_FOLDER)


def resolve_model_name(root: str | os.PathLike, options: IndexOptions, requested: str | None) -> str:
    """The model to index with: the one asked for, else the one the index was built with,
    else :data:`DEFAULT_MODEL`."""
    if requested:
        return requested
    manifest = read_manifest(index_layout(root, options))
    return manifest.model if manifest else DEFAULT_MODEL


def resolve_ocr(root: str | os.PathLike, options: IndexOptions) -> bool:
    """Whether this run reads text in pictures: as given, else as the index recorded, else on."""
    if options.ocr is not None:
        return options.ocr
    manifest = read_manifest(index_layout(root, options))
    return bool((manifest.recorded if manifest is not None else {}).get("ocr", True))


def resolve_speech(root: str | os.PathLike, options: IndexOptions) -> tuple[bool, str | None]:
    """Whether this run transcribes speech, and the model folder to do it with (None: the
    default model): as given, else as the index recorded, else on with the default."""
    recorded = {}
    manifest = read_manifest(index_layout(root, options))
    if manifest is not None:
        recorded = manifest.recorded
    speech = options.speech if options.speech is not None else recorded.get("speech", True)
    return bool(speech), options.speech_model or recorded.get("speech_model")


def index_folder(
    root: str | os.PathLike,
    encoder: EncoderLike,
    options: IndexOptions | None = None,
    progress: ProgressFn | None = None,
) -> Summary:
    """Bring the index of ``root`` up to date with the folder (see the module docstring).

    Raises:
        OptionError: an option that cannot be used (a ValueError).
        IndexBusyError: another process holds the index.
        IndexMismatchError: the index belongs to another folder or model (and not ``rebuild``).
        StoreError / ShardError: the database or a shard cannot be written.
    """
    options = options or IndexOptions()
    root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    layout = index_layout(root, options)
    if options.links is not None and options.links not in LINKS:
        raise OptionError(f"--links takes {', '.join(LINKS)}, not {options.links!r}")
    if options.ray and options.encoder_factory is None:
        raise OptionError(
            "--ray needs IndexOptions.encoder_factory: a picklable callable building the model on each worker"
        )
    if options.frame_seconds is not None and not options.frame_seconds > 0:
        raise OptionError(f"--frame-seconds must be a positive number of seconds, not {options.frame_seconds}")
    for flag, factory in (("--index-type", options.index_type), ("--reindex-type", options.reindex_type)):
        if factory:
            check_factory(flag, factory, encoder.embed_dim)
    if options.max_memory is not None and options.max_memory <= 0:
        raise OptionError(f"--max-memory must be a positive size, not {options.max_memory}")
    layout.dir.mkdir(parents=True, exist_ok=True)
    with IndexLock(layout, options.wait):
        return index_locked(root, layout, encoder, options, progress)


def check_factory(flag: str, factory: str, dim: int) -> None:
    """Refuse what is neither ``auto`` nor a FAISS factory string, before any work.

    Raises:
        OptionError: (a ValueError) naming the flag and examples of valid types.
    """
    if factory == AUTO:
        return
    from ..storage.shards import faiss_module

    faiss = faiss_module()
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise OptionError(
            f"{flag} {factory!r} is not an index type FAISS knows ({str(exc).splitlines()[0][:120]}); "
            "use auto, or a factory string such as Flat, IVF1024,Flat, IVF4096,PQ48 or HNSW32"
        ) from None


def index_locked(
    root: Path, layout: Layout, encoder: EncoderLike, options: IndexOptions, progress: ProgressFn | None = None
) -> Summary:
    """:func:`index_folder` for a caller that already holds the index's lock (``doctor --fix``)."""
    run = _Run(root, layout, encoder, options, progress)
    try:
        return run.execute()
    finally:
        run.store.close()


class _Run:
    def __init__(
        self, root: Path, layout: Layout, encoder: EncoderLike, options: IndexOptions, progress: ProgressFn | None
    ) -> None:
        self.started = time.monotonic()
        self.root, self.layout, self.encoder, self.options, self.progress = root, layout, encoder, options, progress
        self.summary = Summary(index=str(layout.dir))
        self.manifest = self._check_manifest()
        # Options not given are the ones the index recorded (a new index records what it was given).
        self.options, self.summary.recorded_options = options.with_recorded(self.manifest.recorded)
        options = self.options
        self.store = Store(options.db_url or layout.db_url(self.manifest.db))
        self.writer = IndexWriter.open(layout, self.manifest, self.store, rebuild=options.rebuild)
        self.budget = int(options.max_memory or self.manifest.max_memory or default_budget())
        if not options.max_memory and self.manifest.max_memory:
            self.summary.recorded_options["max_memory"] = self.manifest.max_memory
        # Mapped: a part is read whole only when changed.
        self.shards = {m: self.writer.shards(m, mmap=True) for m in MODALITIES}
        self.pending_vectors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in MODALITIES}
        self.pending_rows: list[Work] = []
        # Moments of long audio and of videos: their own shards (``audio-segments-NNNNN.faiss``,
        # ``image-segments-...`` for video frames) and rows.
        factory = _segment_factory(self.manifest.index_type, encoder.embed_dim)
        self.segment_shards = {
            m: self.writer.segment_shards(m, factory, mmap=True) for m in ("image", "audio") if m in encoder.modalities
        }
        # Words found in media: each span's text a segment of its file (``text-segments``),
        # while speech is read, and while an index holds any.
        self.reading = bool(options.speech and options.transcriber is not None and "text" in encoder.modalities)
        self.image_crops = False  # image inputs come as uint8 crops (decode.Crops), set by _batches
        self.reading_pictures = bool(options.ocr and options.text_reader is not None and "text" in encoder.modalities)
        if self.reading or self.reading_pictures or any(layout.shards.glob("text-segments-*")):
            self.segment_shards["text"] = self.writer.segment_shards("text", factory, mmap=True)
        # Transcripts read, each (its text segments' vectors, segment rows, spans, reading), one
        # tuple a file: appended whole, so a Ctrl-C never leaves a file's part pending.
        self.pending_reads: list[tuple[np.ndarray | None, list, list[dict], dict]] = []
        self.pending_fingerprints: list[dict] = []  # Fingerprint rows made, not yet committed
        self.added_ids: list[int] = []  # files this run added (compared with the index for copies)
        # Files read before by a source (another model, a failure retried): that source's old words go.
        self.reread: set[tuple[int, str]] = set()
        # Where the decode workers heard speech in the audio files they decoded (the
        # transcriber's own finder, so the same regions): a file without any is not decoded again.
        self.heard: dict[int, list[tuple[float, float]]] = {}
        self.pending_segments: list[tuple[np.ndarray, list[tuple[int, int, str, float, float]]]] = []
        # Segment vectors of files decoded but not yet embedded (their rows not yet pending).
        self.segment_results: dict[int, list[tuple[np.ndarray, list[tuple[int, int, str, float, float]]]]] = {}
        self.video_vectors: dict[int, dict[str, np.ndarray]] = {}  # a video's file vectors, by shard modality
        self.replaced: set[int] = set()  # updated items whose old segments go at the next checkpoint
        self.stale_videos: list[int] = []  # updated videos: both old file vectors go at the next checkpoint
        # A video's frame interval: as asked, else as the index was built. Asked anew, the videos
        # indexed at another interval are embedded again, also by later runs if this one stops
        # before it is done ("reframing" stays in the manifest until a run completes).
        before = self.manifest.recorded.get("frame_seconds")
        self.frame_seconds = float(options.frame_seconds or before or FRAME_SECONDS)
        if not options.frame_seconds and before and before != FRAME_SECONDS:
            self.summary.recorded_options["frame_seconds"] = before
        self.reframe = (before is not None and self.frame_seconds != before) or self.manifest.reframing
        self.scratch = layout.dir / "scratch"
        shutil.rmtree(self.scratch, ignore_errors=True)  # what a killed run left
        self.last_checkpoint = time.monotonic()

    # --- manifest ------------------------------------------------------------------------
    def _check_manifest(self) -> Manifest:
        manifest = read_manifest(self.layout) or self._manifest_from_database()
        enc, opt = self.encoder, self.options
        if manifest is None:
            manifest = Manifest(
                root="",
                model=enc.name,
                dim=enc.embed_dim,
                index_type=opt.index_type,
                shard_size=opt.shard_size,
                index_uuid=new_index_uuid(),
                created=_now(),
            )
        else:
            owner = unescape_path(manifest.root)
            # The same folder reached through a link is the same folder.
            if owner and os.path.realpath(owner) != os.path.realpath(self.root):
                raise IndexMismatchError(
                    f"the index at {self.layout.dir} belongs to {owner}, not {self.root}; use another --index"
                )
            if manifest.weights_hash != enc.weights_hash and not opt.rebuild:
                raise IndexMismatchError(
                    f"the index at {self.layout.dir} was built with model {manifest.model!r} "
                    f"(weights {str(manifest.weights_hash)[:12]}), not {enc.name!r} ({enc.weights_hash[:12]}); "
                    "pass --rebuild to re-embed everything with the new model"
                )
        manifest.root = escape_path(str(self.root))
        manifest.model, manifest.weights_hash, manifest.dim = enc.name, enc.weights_hash, enc.embed_dim
        manifest.metric = "inner_product"
        manifest.modalities = list(enc.modalities)
        if opt.rebuild:
            manifest.index_type, manifest.shard_size = opt.index_type, opt.shard_size
            manifest.types = {}  # every shard goes: auto chooses again
            manifest.reindexing = None
        if self.options.db_url:
            manifest.db = self.options.db_url
        if opt.max_memory:
            manifest.max_memory = int(opt.max_memory)
        manifest.index_uuid = manifest.index_uuid or new_index_uuid()
        manifest.created = manifest.created or _now()
        # The options are recorded once the run has planned without a refusal (see execute):
        # a run refused (a mass removal) leaves the options doctor --fix replays as they were.
        if manifest.options is None:
            manifest.options = opt.recorded()
        return manifest

    def _manifest_from_database(self) -> Manifest | None:
        """A lost manifest (no backup either) from the copy in the index's own SQLite database."""
        if self.options.db_url or not self.layout.database.exists():
            return None
        try:
            store = Store(self.layout.db_url(), create=False)
            try:
                copy = store.manifest_copy_of_folder(escape_path(str(self.layout.dir)))
            finally:
                store.close()
        except StoreError:
            return None
        if copy is not None:
            log.warning("the manifest of %s was lost: restored from the copy in its database", self.layout.dir)
        return copy

    # --- the run -------------------------------------------------------------------------
    def execute(self) -> Summary:
        self._reconcile()
        self._reconcile_words()
        self._reconcile_segments()
        if reindex := self.options.reindex_type or (self.manifest.reindexing and self.manifest.reindexing.type):
            self._reindex(reindex)
        self.next_id = self._max_id() + 1
        self.next_segment_id = self._max_segment_id() + 1
        work = self._plan_files() + self._plan_texts()
        self.manifest.options = self.options.recorded() | {"frame_seconds": self.frame_seconds}
        if self.reframe:
            self.manifest.reframing = True
            write_manifest(self.layout, self.manifest)
        with _StopOnSigint() as stop:
            self.stop = stop
            try:
                self._embed(work)
                if self.reading and not stop.requested:
                    self._read_speech()
                if self.reading_pictures and not stop.requested:
                    self._read_pictures()
                if self.options.fingerprinter is not None and not stop.requested:
                    self._fingerprint()
                    if not stop.requested:
                        self._copies_of_new()
            except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler
                stop.requested = True
            finally:
                if stop.requested:
                    log.warning("interrupted: saving what is embedded so far")
                    self.summary.interrupted = True
                self._checkpoint()
                shutil.rmtree(self.scratch, ignore_errors=True)
        if not self.summary.interrupted:
            self.manifest.reframing = False
            self._retype_if_due()  # also when nothing was added: a smaller --max-memory
        self.summary.counts = self.store.counts()
        self.summary.segments = self.store.segment_count()
        self.summary.seconds = round(time.monotonic() - self.started, 3)
        self.manifest.last_run = {k: v for k, v in self.summary.to_dict().items() if k not in ("skipped", "copies")} | {
            "skipped": len(self.summary.skipped),
            "copies": len(self.summary.copies),  # the manifest keeps counts, not lists
            "finished": _now(),
        }
        self.writer.publish()
        return self.summary

    def _reconcile(self) -> None:
        """Make SQL and the shards agree after whatever happened to the last run."""
        for modality, shards in self.shards.items():
            all_ids = shards.ids()
            uniq, times = np.unique(all_ids, return_counts=True)
            if (twice := uniq[times > 1]).size:
                log.warning("%d %s ids had more than one vector: re-embedding them", twice.size, modality)
                shards.remove(twice)
                shards.flush()
                self.store.mark_pending(twice.tolist())
            # Sorted id arrays, not sets: 8 bytes an id at a million rows.
            in_shards = np.unique(shards.ids())
            indexed = self.store.id_array(modality, INDEXED, vectors=True)
            lost = np.setdiff1d(indexed, in_shards, assume_unique=True).tolist()
            if lost:
                log.warning("%d %s rows had no vector (interrupted run?): re-embedding them", len(lost), modality)
                self.store.mark_pending(lost)
            if len(unstored := shards.unstored()):  # re-scoring needs them: embedded again
                log.warning("%d %s vectors had no stored copy: re-embedding them", len(unstored), modality)
                shards.remove(unstored)
                shards.flush()
                self.store.mark_pending(unstored.tolist())
                in_shards = np.setdiff1d(in_shards, unstored, assume_unique=True)
            self.writer.drop_orphans(shards, indexed, f"{modality} vectors", present=in_shards)

    def _reconcile_words(self) -> None:
        """Words found in media as their vectors and rows are: a file with a span but no text
        segment (or the reverse), or a text segment without its vector (an interrupted run),
        loses its words and is read again; the vectors left without a row go below."""
        shards = self.segment_shards.get("text")
        if shards is None:
            return
        rows, spans = self.store.segment_ids(modality="text"), self.store.span_ids()
        present = set(np.unique(shards.ids()).tolist())
        items = {item for seg, item in rows.items() if seg not in present or seg not in spans}
        items |= {item for span, item in spans.items() if span not in rows}
        if items:
            log.warning("%d files had words without their vectors (interrupted run?): reading them again", len(items))
            self.store.forget_words(sorted(items))

    def _reconcile_segments(self) -> None:
        """Segment vectors and rows as items are: a vector without a row goes; a row without a
        vector goes and its file is embedded again (its segments with it)."""
        for modality, shards in self.segment_shards.items():
            rows = self.store.segment_ids(modality=modality)
            in_shards, times = np.unique(shards.ids(), return_counts=True)
            twice = set(in_shards[times > 1].tolist())  # removed below, and their files embedded again
            present = set(in_shards.tolist()) - twice
            lost = sorted(set(rows) - present)
            orphans = np.array(sorted((present - set(rows)) | twice), dtype=np.int64)
            if len(orphans):
                log.info("dropping %d segment vectors with no committed row (interrupted run)", len(orphans))
                shards.remove(orphans)
                shards.flush()
            if lost:
                log.warning("%d segments had no vector (interrupted run?): re-embedding their files", len(lost))
                # The file first: killed between the two, it is still embedded again next time.
                self.store.mark_pending(sorted({rows[i] for i in lost}))
                self.store.delete_segments(lost)

    def _max_id(self) -> int:
        return _top_id(self.store.max_id(), self.store.id_range(), self.shards.values())

    def _max_segment_id(self) -> int:
        return _top_id(self.store.max_segment_id(), self.store.segment_range(), self.segment_shards.values())

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # --- change detection ----------------------------------------------------------------
    def _plan_files(self) -> list[Work]:
        """The files to embed (new, changed, or lacking their moments); moves and touched files
        updated in place, the missing ones removed (refused when they are most of the index)."""
        found, unseen = self._walk()
        rows = {r.path: r for r in self.store.file_rows()}
        plan = _FilePlan(self._missing(rows, found, unseen), self._failures())
        plan.lacking = self._lacking_segments(rows) | self._reframed(rows)
        for path, f in found.items():
            self._plan_file(plan, path, f, rows.get(path))
        # After moves are found: a renamed folder removes nothing.
        self._check_mass_removal(len(plan.missing), len(rows))
        if plan.changed_failures:
            self.store.forget_failures(plan.changed_failures)
        if plan.moves:
            self.store.update_many(plan.moves)
        self._remove([r.id for r in plan.missing.values()], {r.id: r.modality for r in plan.missing.values()})
        return plan.work

    def _walk(self) -> tuple[dict[str, Found], set[str]]:
        """The files of the folder this model embeds, by stored path; and the folders whose rows
        stay though nothing was found there (failed to list, links not followed)."""
        found: dict[str, Found] = {}
        unseen: set[str] = set()
        towers = set(self.encoder.modalities)
        for entry in walk(
            self.root, skip_dirs=[str(self.layout.dir)], exclude=self.options.exclude, links=self.options.links
        ):
            if isinstance(entry, Skipped):
                self._skip(entry.rel, entry.reason)
                if entry.keep:
                    unseen.add(escape_path(entry.rel))
            elif entry.modality in towers or (entry.modality == VIDEO and {"image", "audio"} & towers):
                found[escape_path(entry.rel)] = entry
        return found, unseen

    def _missing(self, rows: dict[str, Any], found: dict[str, Found], unseen: set[str]) -> dict[str, Any]:
        """Rows of files no longer found (moved or removed), but those under ``unseen`` folders."""
        if self.options.prune_unseen:
            unseen = set()
        gone = {p: r for p, r in rows.items() if p not in found}
        missing = {p: r for p, r in gone.items() if not _under(p, unseen)}
        self.summary.kept = len(gone) - len(missing)
        if self.summary.kept:
            log.warning(
                "%d indexed files lie under folders that could not be read, or links no longer followed: kept "
                "(--prune-unseen removes them)",
                self.summary.kept,
            )
        return missing

    def _failures(self) -> dict[str, Any]:
        """Files whose decoder crashed or hung in an earlier run (none with ``--retry-failed``)."""
        failures = self.store.failures()
        if self.options.retry_failed and failures:
            self.store.forget_failures()
            return {}
        return failures

    def _plan_file(self, plan: _FilePlan, path: str, f: Found, row: Any) -> None:
        values = {"size": f.size, "mtime_ns": f.mtime_ns, "ext": f.ext}
        if row is not None and row.status == INDEXED and row.size == f.size and row.mtime_ns == f.mtime_ns:
            if row.id in plan.lacking:  # long audio indexed before segments, a video at another frame interval
                plan.work.append(
                    Work(row.id, f.modality, False, values, path=f.abs, rel=path, old_hash=row.content_hash)
                )
            else:
                self.summary.unchanged += 1
            return
        failure = plan.failures.get(path)
        if failure is not None:
            if (failure.size, failure.mtime_ns) == (f.size, f.mtime_ns):
                again = "not tried again until the file changes (or --retry-failed)"
                self._skip(f.rel, f"{failure.reason} in an earlier run; {again}")
                return
            plan.changed_failures.append(path)
        if row is not None:
            digest = self._hash(f)
            if digest is None:
                return
            if row.status == INDEXED and digest == row.content_hash:
                plan.moves.append((row.id, values))  # touched, same content: keep the vector
                self.summary.unchanged += 1
            else:
                plan.work.append(
                    Work(row.id, f.modality, False, values, path=f.abs, rel=path, old_hash=row.content_hash)
                )
            return
        if f.size in plan.missing_sizes:  # perhaps a missing file, moved here
            digest = self._hash(f)
            if digest is None:
                return
            if twins := plan.by_hash.get(digest):
                old = twins.pop()
                plan.missing.pop(old.path)
                plan.moves.append((old.id, {**values, "path": path}))
                self.summary.moved += 1
                return
        new = {"path": path, "kind": FILE, "line": 0, "modality": f.modality, "index_id": self.store.index_id}
        plan.work.append(Work(self._new_id(), f.modality, True, values | new, path=f.abs, rel=path))

    def _reframed(self, rows: dict[str, Any]) -> set[int]:
        """Videos whose frames were taken at another interval than this run's (only looked up
        when the interval changed, or a change was left unfinished)."""
        if not self.reframe:
            return set()
        spans = self.store.longest_segments("image")
        out = set()
        for r in rows.values():
            if r.modality == VIDEO and r.id in spans:
                expected = min(self.frame_seconds, r.duration or self.frame_seconds)
                if abs(spans[r.id] - expected) > 0.01:
                    out.add(r.id)
        return out

    def _lacking_segments(self, rows: dict[str, Any]) -> set[int]:
        """Indexed audio longer than one window with no segments: made by an xmr before segments
        (or a run that did not finish them); they are embedded again, their moments with them."""
        if "audio" not in self.segment_shards:
            return set()
        window = self.encoder.preprocess_audio.window_seconds
        long = {
            r.id for r in rows.values() if r.modality == "audio" and r.status == INDEXED and (r.duration or 0) > window
        }
        if not long:
            return set()
        return long - set(self.store.segment_ids(sorted(long), modality="audio").values())

    def _check_mass_removal(self, removing: int, indexed: int) -> None:
        if self.options.allow_mass_removal or indexed < MASS_REMOVAL_MIN_ITEMS or removing <= indexed / 2:
            return
        raise MassRemovalError(
            f"this run would remove {removing} of the {indexed} indexed files, which are no longer "
            f"found under {self.root}. "
            "Is a drive unmounted, or the folder moved? Nothing was removed. "
            "If they are really gone, run again with --allow-mass-removal"
        )

    def _hash(self, f: Found) -> str | None:
        try:
            return file_hash(f.abs)
        except OSError as exc:
            self._skip(f.rel, f"cannot read: {exc.strerror or exc}")
            return None

    def _plan_texts(self) -> list[Work]:
        """Text items of the ``--texts`` files: new and changed lines embedded, lines gone removed,
        and every item of a texts file no longer given (or gone) removed."""
        sources = {escape_path(os.path.abspath(t)): t for t in self.options.texts}
        rows_by_source: dict[str, dict[int, Item]] = {}
        for r in self.store.items(TEXT_LINE):
            rows_by_source.setdefault(r.path, {})[r.line] = r
        dropped = [r for source, rows in rows_by_source.items() if source not in sources for r in rows.values()]
        if dropped:
            log.info("removing %d text items of texts files no longer given", len(dropped))
            self._remove([r.id for r in dropped], {r.id: "text" for r in dropped})
        if not sources:
            return []
        if "text" not in self.encoder.modalities:
            raise OptionError(f"model {self.encoder.name!r} has no text tower: --texts cannot be indexed")
        work: list[Work] = []
        for source, texts_file in sources.items():
            lines = dict(read_texts(texts_file))
            rows = rows_by_source.get(source, {})
            gone = [r for n, r in rows.items() if n not in lines]
            self._remove([r.id for r in gone], {r.id: "text" for r in gone})
            for n, text in lines.items():
                row = rows.get(n)
                if row is not None and row.text == text and row.status == INDEXED:
                    self.summary.unchanged += 1
                    continue
                values = {"text": text, "size": len(text.encode()), "content_hash": _text_hash(text)}
                if row is None:
                    work.append(
                        Work(
                            self._new_id(),
                            "text",
                            True,
                            {
                                **values,
                                "path": source,
                                "line": n,
                                "kind": TEXT_LINE,
                                "modality": "text",
                                "ext": "",
                                "index_id": self.store.index_id,
                            },
                            text=text,
                        )
                    )
                else:
                    work.append(Work(row.id, "text", False, values, text=text))
        return work

    def _remove(self, ids: list[int], modality_of: dict[int, str]) -> None:
        if not ids:
            return
        segments = self.store.segment_ids(ids)
        self.store.delete(ids)  # rows first (segments too): a vector without a row is dropped at the next start
        for modality, shards in self.shards.items():
            mine = [i for i in ids if modality in vector_modalities(modality_of[i])]
            if mine:
                shards.remove(np.array(mine, dtype=np.int64))
                shards.flush()
        if segments:
            for shards in self.segment_shards.values():
                shards.remove(np.array(sorted(segments), dtype=np.int64))
                shards.flush()
        self.summary.removed += len(ids)

    def _skip(self, rel: str, reason: str) -> None:
        log.warning("skipped %s: %s", rel, reason)
        self.summary.skipped.append({"path": str(self.root / rel) if rel else str(self.root), "reason": reason})

    # --- embedding -----------------------------------------------------------------------
    def _embed(self, work: list[Work]) -> None:
        if work:
            towers = {m for w in work for m in vector_modalities(w.modality)}
            self.encoder.warm(sorted(towers & set(self.encoder.modalities)))
        self.total, self.done = len(work), 0
        self._report(0)
        batches = self._batches(work)
        try:
            self._embed_batches(batches)
        finally:
            batches.close()  # the decode workers stop here, not whenever the generator is collected

    def _embed_batches(self, batches: Iterator[tuple[str, list[tuple[Work, Decoded | None]]]]) -> None:
        for modality, batch in batches:
            if self.stop.requested and modality != VIDEO:  # a video's vectors are made already: kept
                break
            if modality == VIDEO:  # file vectors made from its segments' (see _embed_segments)
                for w, _ in batch:
                    for track, vector in self.video_vectors.pop(w.item_id).items():
                        self.pending_vectors[track].append((vector[None], np.array([w.item_id], dtype=np.int64)))
                    if not w.new:
                        self.stale_videos.append(w.item_id)
            else:
                vectors = self._encode(modality, batch)
                ids = np.array([w.item_id for w, _ in batch], dtype=np.int64)
                self.pending_vectors[modality].append((vectors, ids))
            for w, decoded in batch:
                if not w.new and (modality in self.segment_shards or modality == VIDEO):
                    self.replaced.add(w.item_id)  # its old segments go, whatever the new file holds
                if w.item_id in self.segment_results:  # its moments go down with its row, never before
                    self.pending_segments.extend(self.segment_results.pop(w.item_id))
                if decoded is not None:
                    w.values.update(content_hash=decoded.content_hash, text=decoded.text, **(decoded.meta or {}))
                self.pending_rows.append(w)
            self._report(len(batch))
            if (
                len(self.pending_rows) >= self.options.checkpoint_items
                or time.monotonic() - self.last_checkpoint > self.options.checkpoint_seconds
            ):
                self._checkpoint()
            if self.stop.requested:
                break

    def _embed_segments(self, w: Work, found: list) -> bool:
        """Vectors of a file's segments, a batch of inputs at a time from their scratch files
        (or already encoded, by a Ray worker); a video's file vectors are their means (one per
        shard modality). False when a Ctrl-C came first: the file is left for the next run, whole."""
        encoded: list[EncodedSegments] = []
        for segments in found:
            if isinstance(segments, EncodedSegments):
                encoded.append(segments)
                continue
            done = encode_segments(self.encoder, segments, self.options.batch_size, lambda: self.stop.requested)
            if done is None:
                for rest in found:
                    if isinstance(rest, Segments):
                        rest.discard()
                return False
            encoded.append(done)
        results = []
        means: dict[str, np.ndarray] = {}
        for seg in encoded:
            if not len(seg.vectors):
                continue
            rows = []
            for start, end in zip(seg.starts, seg.ends):
                rows.append((self.next_segment_id, w.item_id, seg.modality, start, end))
                self.next_segment_id += 1
            results.append((seg.vectors, rows))
            mean = seg.vectors.astype(np.float64).mean(axis=0)
            means[seg.modality] = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
            if seg.truncated:
                log.warning(
                    "%s: indexed, but its %s moments only up to %.0f s (at most %d segments a file)",
                    os.path.relpath(w.path, self.root),
                    "frame" if seg.modality == "image" and w.modality == VIDEO else seg.modality,
                    max(seg.ends),
                    len(seg.vectors),
                )
        self.segment_results[w.item_id] = results
        if w.modality == VIDEO:
            self.video_vectors[w.item_id] = means
        return True

    # --- words found in media ----------------------------------------------------------
    def _read_speech(self) -> None:
        """Transcribe the audio and video files not yet read (new, changed, indexed before
        speech was on, read by another model, or failed with ``--retry-failed``): each
        transcript's utterances become spans, their texts embedded as segments of the file,
        committed with a reading of the file (also when no word was heard, or the file could not
        be read: not read again until it changes)."""
        self._read_files(self.options.transcriber, ("audio", VIDEO), self._read_one, "transcribing speech")

    def _read_pictures(self) -> None:
        """Read the text in the pictures and videos not yet read, as :meth:`_read_speech`
        transcribes: each line a span (its box in ``words``; in a video, the times it is shown),
        its text embedded as a segment of the file."""
        self._read_files(self.options.text_reader, ("image", VIDEO), self._read_picture, "reading text in pictures")

    def _read_files(
        self, reader: Any, modalities: tuple[str, ...], read_one: Callable[[Any], tuple | None], what: str
    ) -> None:
        self._checkpoint()  # this run's new files first: read below like the rest
        todo = self.store.unread(reader.source, modalities, reader.model_id, self.options.retry_failed)
        if not todo:
            return
        try:
            getattr(reader, "load", lambda: None)()  # a model that cannot load fails no file
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("%s stopped: %s", what, exc)
            return
        log.info("%s: %d files", what, len(todo))
        rows = self.store.rows_by_ids([i for i, _ in todo])
        self.total += len(todo)
        for item_id, read_before in todo:
            if self.stop.requested:
                break
            row = rows.get(item_id)
            read = read_one(row) if row is not None else None
            if read is not None:
                self.pending_reads.append(read)
                if read_before:
                    self.reread.add((item_id, reader.source))
            self._report(1)
            if (
                len(self.pending_reads) >= self.options.checkpoint_items
                or time.monotonic() - self.last_checkpoint > self.options.checkpoint_seconds
            ):
                self._checkpoint()

    def _read_one(self, row: Any) -> tuple[np.ndarray | None, list, list[dict], dict]:
        """One file's transcript, ready for a checkpoint (see ``pending_reads``)."""
        transcriber, rel = self.options.transcriber, unescape_path(row.path)
        reading = {"item_id": row.id, "source": transcriber.source, "model": transcriber.model_id}
        heard = self.heard.pop(row.id, None)
        try:
            if heard == []:  # the decode worker heard no speech: nothing to decode again
                utterances, seconds, speech = [], float(row.duration or 0.0), 0.0
            else:
                transcript = transcriber.transcribe(self.root / rel, *([heard] if heard else []))
                utterances, seconds, speech = transcript.utterances, transcript.seconds, transcript.speech_seconds
        except (ValueError, OSError, RuntimeError) as exc:  # a decoder's or the model's: this file only
            log.warning("no transcript of %s: %s", rel, exc)
            return None, [], [], reading | {"reason": str(exc)[:500]}
        self.summary.transcribed += 1
        self.summary.speech_seconds = round(self.summary.speech_seconds + seconds, 3)
        found = [
            (
                float(u.start),
                float(u.end),
                u.text,
                float(u.confidence),
                [[round(w.start, 3), round(w.end, 3), w.text, round(w.probability, 3)] for w in u.words] or None,
            )
            for u in utterances
        ]
        return self._found(row, transcriber.source, found, reading | {"seconds": seconds, "found_seconds": speech})

    def _read_picture(self, row: Any) -> tuple[np.ndarray | None, list, list[dict], dict] | None:
        """One picture's or video's lines of text, ready for a checkpoint (see ``pending_reads``);
        None when the run was stopped amid a video."""
        reader, rel = self.options.text_reader, unescape_path(row.path)
        reading = {"item_id": row.id, "source": reader.source, "model": reader.model_id}
        try:
            if row.modality == VIDEO:
                found, frames = read_video_text(
                    reader, self.root / rel, self.frame_seconds, lambda: self.stop.requested
                )
                if self.stop.requested:  # stopped amid the video: read whole at the next run
                    return None
                self.summary.videos_read += 1
                self.summary.frames_read += frames
            else:
                found = [
                    (0.0, 0.0, line.text, float(line.confidence), {"box": [[float(x), float(y)] for x, y in line.box]})
                    for line in reader.read(self.root / rel)
                ]
                self.summary.pictures_read += 1
        except Exception as exc:  # noqa: BLE001 - a decoder's, OpenCV's or ONNX Runtime's: this file only
            log.warning("no text read in %s: %s", rel, exc)
            return None, [], [], reading | {"reason": str(exc)[:500]}
        self.summary.text_lines += len(found)
        return self._found(row, reader.source, found, reading)

    def _found(
        self, row: Any, source: str, found: list[tuple[float, float, str, float, Any]], reading: dict
    ) -> tuple[np.ndarray | None, list, list[dict], dict]:
        """A file's words found by ``source`` as ``(start, end, text, confidence, words)``
        (``words``: a JSON-able detail, or None), as the checkpoint takes them: their texts'
        vectors, segment rows and spans (one id for both), and the reading."""
        texts = [text for _, _, text, _, _ in found]
        bs = self.options.batch_size
        vectors = [encode_batch(self.encoder, "text", texts[a : a + bs]) for a in range(0, len(texts), bs)]
        segments, spans = [], []
        for start, end, text, confidence, words in found:
            segments.append((self.next_segment_id, row.id, "text", start, end))
            spans.append(
                {
                    "id": self.next_segment_id,
                    "item_id": row.id,
                    "source": source,
                    "start": start,
                    "end": end,
                    "text": text,
                    "confidence": confidence,
                    "words": json.dumps(words) if words else None,
                }
            )
            self.next_segment_id += 1
        vector = np.concatenate(vectors).astype(np.float32) if vectors else None
        return vector, segments, spans, reading | {"spans": len(segments)}

    # --- fingerprints (copies) ----------------------------------------------------------
    def _fingerprint(self) -> None:
        """Fingerprint the files that lack one of their present content (new, changed, or
        indexed before fingerprints were made), a few at a time in threads (decoders and fpcalc
        leave the interpreter), committed at checkpoints; a file that cannot be fingerprinted is
        recorded with its reason and not tried again until it changes."""
        from concurrent.futures import ThreadPoolExecutor

        fingerprinter = self.options.fingerprinter
        self._checkpoint()  # this run's new files first: fingerprinted below like the rest
        todo = self.store.unfingerprinted(fingerprinter.methods)
        if not todo:
            return
        log.info("fingerprinting %d files (to find copies)", len(todo))
        rows = self.store.rows_by_ids(todo)
        self.total += len(todo)
        workers = max(1, self.options.workers or default_workers())
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(todo), 4 * workers):
                if self.stop.requested:
                    break
                part = [rows[i] for i in todo[start : start + 4 * workers] if i in rows]
                made = list(pool.map(self._fingerprint_one, part))
                self.summary.fingerprinted += sum(not r["reason"] for r in made)  # counted here, not in the threads
                self.pending_fingerprints.extend(made)
                self._report(len(part))
                if (
                    len(self.pending_fingerprints) >= self.options.checkpoint_items
                    or time.monotonic() - self.last_checkpoint > self.options.checkpoint_seconds
                ):
                    self._checkpoint()

    def _copies_of_new(self) -> None:
        """The pictures this run added that are copies of pictures in the index, by their
        hashes alone (a range search of the new ones' hashes against every stored one): cheap
        enough for every run; cropped and captioned copies are left to ``xmr duplicates``."""
        fingerprinter = self.options.fingerprinter
        method = fingerprinter.methods.get("image")
        if not self.added_ids or method is None or not hasattr(fingerprinter, "copies"):
            return
        self._checkpoint()  # the fingerprints made: stored
        found = fingerprinter.copies(self.added_ids, self.store.fingerprints(method, head=fingerprinter.head))
        if not found:
            return
        rows = self.store.rows_by_ids(sorted({i for pair in found for i in pair[:2]}))
        self.summary.copies = [
            {"path": unescape_path(rows[a].path), "copy_of": unescape_path(rows[b].path), "bits": bits}
            for a, b, bits in found
            if a in rows and b in rows
        ]
        log.info("%d new pictures are copies of pictures in the index", len(self.summary.copies))

    def _fingerprint_one(self, row: Any) -> dict:
        """One file's Fingerprint row (its reason when it could not be made)."""
        fingerprinter, rel = self.options.fingerprinter, unescape_path(row.path)
        found = {"item_id": row.id, "method": fingerprinter.methods[row.modality], "content_hash": row.content_hash}
        try:
            value = fingerprinter.fingerprint(self.root / rel, row.modality)
        except (ValueError, OSError, RuntimeError) as exc:  # this file only
            log.warning("no fingerprint of %s: %s", rel, exc)
            return found | {"value": b"", "reason": str(exc)[:500]}
        return found | {"value": value, "reason": ""}

    def _report(self, more: int) -> None:
        self.done += more
        if self.progress:
            self.progress(self.done, self.total)

    def _batches(self, work: list[Work]) -> Iterator[tuple[str, list[tuple[Work, Decoded | None]]]]:
        """Decoded items grouped in per-modality batches; files decode in worker processes."""
        bs = self.options.batch_size
        buckets: dict[str, list] = {m: [] for m in MODALITIES}
        for w in work:
            if w.path is None:
                buckets["text"].append((w, None))
                if len(buckets["text"]) >= bs:
                    yield "text", buckets["text"]
                    buckets["text"] = []
        file_work = [w for w in work if w.path is not None]
        image, audio = self.encoder.preprocess_image, self.encoder.preprocess_audio
        listen = getattr(self.options.transcriber, "finder", None) if self.reading else None
        video = SegmentingVideo(image, audio, str(self.scratch), self.frame_seconds, listen=listen)
        if audio is not None:  # long files: every window a moment
            audio = SegmentingAudio(audio, str(self.scratch), listen=listen)
        pre = {"image": image, "audio": audio, VIDEO: video, "text": None}
        if self.options.ray:
            from .ray_embed import decode_embed_on_ray

            if self.options.encoder_factory is None:
                raise ValueError(
                    "--ray needs an encoder factory (IndexOptions.encoder_factory) to build the model on each worker"
                )
            source = decode_embed_on_ray(
                ((i, w.path, w.modality) for i, w in enumerate(file_work)),
                self.options.encoder_factory,
                self.options.ray,
                self.options.batch_size,
                self.frame_seconds,
                self.options.decode_timeout,
            )
        else:
            pre["image"] = crops_of(image)
            self.image_crops = pre["image"] is not image  # the workers pass crops: _encode normalises them
            jobs = ((i, w.path, w.modality, pre[w.modality]) for i, w in enumerate(file_work))
            source = _decode_all(jobs, self.options.workers, self.options.decode_timeout, ahead=bs)
        try:
            for decoded in source:
                w = file_work[decoded.key]
                if not decoded.ok:
                    self._skip(os.path.relpath(w.path, self.root), decoded.reason)
                    self._report(1)
                    if not w.new:  # an indexed file that no longer decodes: drop its old vector too
                        self._remove([w.item_id], {w.item_id: w.modality})
                    if decoded.remember:  # after the removal: killed in between, the file is only tried again
                        self.store.record_failures([(w.rel, w.values["size"], w.values["mtime_ns"], decoded.reason)])
                    continue
                segments = (decoded.meta or {}).pop(SEGMENTS_KEY, None)
                heard = (decoded.meta or {}).pop(SPEECH_KEY, None)
                if heard is not None:
                    self.heard[w.item_id] = heard
                # Embedded now, as each file comes: its scratch files go at once (one such file at a
                # time is decoded ahead, see _waiting_bytes).
                if segments is not None and not self._embed_segments(w, segments):
                    continue  # interrupted: not indexed, so the next run takes it whole
                if w.modality == VIDEO:
                    yield VIDEO, [(w, decoded)]
                    continue
                buckets[w.modality].append((w, decoded))
                if len(buckets[w.modality]) >= bs:
                    yield w.modality, buckets[w.modality]
                    buckets[w.modality] = []
        finally:  # an error here too stops the decoding (read ahead on its thread) at once
            getattr(source, "close", lambda: None)()
        for modality, rest in buckets.items():
            if rest:
                yield modality, rest

    def _encode(self, modality: str, batch: list[tuple[Work, Decoded | None]]) -> np.ndarray:
        if batch and all(d is not None and d.vectors for _, d in batch):  # embedded on a Ray worker
            return np.stack([d.vectors[modality] for _, d in batch]).astype(np.float32, copy=False)
        if modality == "text" and any(d is not None and d.vectors for _, d in batch):  # lines and Ray-embedded files
            lacking = [
                (n, w.text if w.text is not None else d.text) for n, (w, d) in enumerate(batch) if not (d and d.vectors)
            ]
            local = dict(zip([n for n, _ in lacking], self.encoder.encode_text([t for _, t in lacking])))
            return np.stack([local[n] if n in local else d.vectors["text"] for n, (_, d) in enumerate(batch)])
        if modality == "text":
            return encode_batch(self.encoder, modality, [w.text if w.text is not None else d.text for w, d in batch])
        return encode_batch(self.encoder, modality, [d.features for _, d in batch], crops=self.image_crops)

    def _old_segments(self) -> tuple[list[int], list[int]]:
        """The segments this checkpoint drops, and the files whose words go with them: the
        moments of files embedded again (a file's words stay when its content did not change:
        moments made anew, a video's frames at another interval), and the words of files whose
        content changed (every source's), and of files a source reads again (that source's
        only: a video's lines read again keep its transcript; its reading is replaced)."""
        unheard = {w.item_id for w in self.pending_rows if not w.new and w.values.get("content_hash") != w.old_hash}
        old: dict[int, int] = {}
        if self.replaced:
            for modality in ("image", "audio"):
                old |= self.store.segment_ids(sorted(self.replaced), modality=modality)
        if unheard:
            old |= self.store.segment_ids(sorted(unheard), modality="text")
        for source in sorted({source for _, source in self.reread}):
            again = sorted(item for item, s in self.reread if s == source and item not in unheard)
            old |= {sp.id: sp.item_id for sp in self.store.spans_of(again, source)}
        return sorted(old), sorted(unheard)

    def _checkpoint(self) -> None:
        """What is embedded so far, through the index's one write path: the vectors (updated
        items' old ones removed, both of a stale video's; old segments of replaced files), then
        the rows that point at them."""
        if not self.pending_rows and not self.pending_reads and not self.pending_fingerprints:
            return
        stale = np.array(self.stale_videos, dtype=np.int64)
        vectors = {}
        for modality, parts in self.pending_vectors.items():
            also = [stale] if len(stale) and modality in vector_modalities(VIDEO) else []
            if parts or also:
                added = np.concatenate([i for _, i in parts]) if parts else np.zeros(0, np.int64)
                change = VectorChange(
                    remove=np.concatenate([added, *also]),
                    vectors=np.concatenate([v for v, _ in parts]) if parts else None,
                    ids=added,
                )
                vectors[modality] = (self.shards[modality], change)
            self.pending_vectors[modality] = []
        old_segments, unheard = self._old_segments()
        for vectors_of, segments, _, _ in self.pending_reads:
            if segments:
                self.pending_segments.append((vectors_of, segments))
        new_segments = [row for _, rows in self.pending_segments for row in rows]
        for modality, shards in self.segment_shards.items():
            parts = [(v, rows) for v, rows in self.pending_segments if rows and rows[0][2] == modality]
            change = VectorChange(
                remove=np.array(old_segments, dtype=np.int64),
                vectors=np.concatenate([v for v, _ in parts]) if parts else None,
                ids=np.array([r[0] for _, rows in parts for r in rows], dtype=np.int64),
            )
            vectors[f"{modality}-segments"] = (shards, change)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        done = {"status": INDEXED, "model": self.encoder.name, "indexed_at": now}
        rows = RowChange(
            new=[{**w.values, "id": w.item_id, **done} for w in self.pending_rows if w.new],
            changed=[(w.item_id, {**w.values, **done}) for w in self.pending_rows if not w.new],
            drop_segments=old_segments,
            new_segments=new_segments,
            spans=[span for _, _, spans, _ in self.pending_reads for span in spans],
            readings=[reading for _, _, _, reading in self.pending_reads],
            drop_readings=unheard,
            fingerprints=self.pending_fingerprints,
        )
        self.writer.checkpoint(vectors, rows)
        self.summary.added += len(rows.new)
        self.added_ids.extend(int(r["id"]) for r in rows.new if r.get("kind") == FILE and r.get("modality") == "image")
        self.summary.updated += len(rows.changed)
        self.pending_rows = []
        self.pending_segments = []
        self.pending_reads, self.reread = [], set()
        self.pending_fingerprints = []
        self.replaced = set()
        self.stale_videos = []
        self.last_checkpoint = time.monotonic()
        if not (getattr(self, "stop", None) and self.stop.requested):  # Ctrl-C: save and stop, no rebuild
            self._retype_if_due()

    def _retype_if_due(self) -> None:
        """Under auto: a modality whose size (or the budget) calls for another type, or whose
        IVF has grown 10x, is rebuilt as it should be now."""
        self.writer.follow(self.shards, self.budget)

    # --- index types ---------------------------------------------------------------------
    def _reindex(self, factory: str) -> None:
        """``--reindex-type`` (or one a killed run left unfinished): each modality rebuilt as
        ``factory`` (or as auto chooses) from the vectors it holds, under a new prefix (one
        without vectors too: no file of its old type is taken for the new). The manifest keeps
        the work left (``reindexing``), so a run killed midway is finished by the next.

        Raises:
            ValueError: a modality holds too few vectors to train ``factory`` (nothing changed).
        """
        manifest = self.manifest
        if manifest.reindexing is None or manifest.reindexing.type != factory:
            for m, shards in self.shards.items():
                if factory != AUTO and 0 < shards.ntotal < (need := retype.training_minimum(factory)):
                    raise OptionError(
                        f"--reindex-type {factory}: the {m} shards hold {shards.ntotal} vectors, too few to "
                        f"train it (at least {need}); use auto, or Flat"
                    )
            for m in self.shards:  # as they are until each one's switch (empty ones too: a new prefix)
                manifest.types.setdefault(m, manifest.choice(m))
            manifest.index_type = factory
            manifest.reindexing = Reindexing(factory, list(self.shards))
            write_manifest(self.layout, manifest)
        total = sum(s.ntotal for s in self.shards.values())
        for m in list(manifest.reindexing.left):
            shards = self.shards[m]
            if factory == AUTO:
                choice = choose(shards.ntotal, self.encoder.embed_dim, retype.share(self.budget, shards.ntotal, total))
            else:
                choice = fixed(factory, m)
            manifest.reindexing.left.remove(m)  # on disk with the switch, not before
            self._retype(m, choice)
        manifest.reindexing = None
        write_manifest(self.layout, manifest)

    def _retype(self, modality: str, choice: Choice) -> None:
        """Rebuild ``modality``'s shards as ``choice``; the manifest naming them is the switch."""
        self.shards[modality] = retype.switch(
            self.layout.shards, self.manifest, modality, self.shards[modality], choice, self.writer.publish
        )


@dataclass
class _FilePlan:
    """What :meth:`_Run._plan_files` gathers: the rows of files not found (a moved file's row
    leaves them when its content turns up under another path), and what the run will do."""

    missing: dict[str, Any]
    failures: dict[str, Any]
    lacking: set[int] = field(default_factory=set)
    work: list[Work] = field(default_factory=list)
    moves: list[tuple[int, dict]] = field(default_factory=list)
    changed_failures: list[str] = field(default_factory=list)
    by_hash: dict[str, list[Any]] = field(init=False)
    missing_sizes: set[int] = field(init=False)

    def __post_init__(self) -> None:
        self.by_hash = {}
        for r in self.missing.values():
            self.by_hash.setdefault(r.content_hash, []).append(r)
        self.missing_sizes = {r.size for r in self.missing.values()}


def _top_id(top: int, id_range: tuple[int, int], shard_sets: Iterable[ShardSet]) -> int:
    """The largest id in use: the database's ``top``, or a vector's in range written before its row."""
    lo, hi = id_range
    for shards in shard_sets:
        ids = shards.ids()
        ids = ids[(ids >= lo) & (ids < hi)]
        if len(ids):
            top = max(top, int(ids.max()))
    return top


def _segment_factory(factory: str, dim: int) -> str:
    """Segments use the index's type unless it needs training (IVF, PQ): a few segments cannot
    train one, so they are searched exactly (Flat); under auto too."""
    from ..storage.shards import faiss_module

    if factory == AUTO:
        return SEGMENT_FACTORY
    faiss = faiss_module()
    return factory if faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT).is_trained else "Flat"


AHEAD_BYTES = 64 << 20  # decoded inputs waiting for the encoder (ahead.read_ahead), at most


def _decode_all(jobs: Iterable[tuple], workers: int | None, timeout: float, ahead: int = 0) -> Iterator[Decoded]:
    """Every job decoded: in workers (``ahead`` results kept ready while the caller embeds, see
    :mod:`indexer.ingest.ahead`), or here with ``workers`` 0."""
    workers = default_workers() if workers is None else workers
    if workers <= 0:
        yield from decode_in_process(jobs)
        return
    with DecodePool(workers, timeout) as pool:
        if ahead <= 0:
            yield from pool.map(jobs)
            return
        yield from read_ahead(pool.map(jobs), pool.stop_soon, _waiting_bytes, ahead, AHEAD_BYTES)


def _waiting_bytes(decoded: Decoded) -> int:
    """What a decoded file holds while it waits: its inputs' bytes, or the whole budget for a long
    file whose moments wait in scratch files (one such file ahead at a time)."""
    if decoded.meta and SEGMENTS_KEY in decoded.meta:
        return AHEAD_BYTES
    return 1 + int(getattr(decoded.features, "nbytes", 0)) + len(decoded.text or "")


def _under(path: str, folders: set[str]) -> bool:
    """Whether the stored ``path`` lies in (or is) one of ``folders`` ("" is the root): its
    ancestors looked up, so the cost is the path's depth, not the number of folders."""
    if not folders:
        return False
    if "" in folders or path in folders:
        return True
    cut = path.rfind("/")
    while cut > 0:
        if path[:cut] in folders:
            return True
        cut = path.rfind("/", 0, cut)
    return False


class _StopOnSigint:
    """While indexing, the first Ctrl-C asks the run to stop after the current batch (so it
    never lands in the middle of a checkpoint); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> "_StopOnSigint":
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _text_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
