"""The schema's constants, importable without SQLAlchemy (the query path reads them)."""

MODALITIES = ("image", "audio", "text")  # the kinds of vector: one set of shards each
# A video item has a vector in two of them: the mean of its frames' (image) and of its
# soundtrack's (audio; none when it has no sound). Its row says which: width for the frames,
# sample_rate for the soundtrack.
VIDEO = "video"


def vector_modalities(item_modality: str) -> tuple[str, ...]:
    """The shards an item of ``item_modality`` may have a vector in."""
    return ("image", "audio") if item_modality == VIDEO else (item_modality,)


SCHEMA_VERSION = 5
ID_BITS = 40  # ids of index n lie in [n << 40, (n + 1) << 40): 10^12 items each, 2^23 indexes
SEGMENT_BIT = 39  # segment ids (moments of long files) take the upper half of their index's range

# Item.status: "pending" rows still need their vector (re)computed; "indexed" rows have one
# in the shards. A killed run leaves at most some pending rows, which the next run finishes.
PENDING = "pending"
INDEXED = "indexed"

# Item.kind: a file found by the folder walk, or a line of a --texts file.
FILE = "file"
TEXT_LINE = "text-line"

# Where the words of a span were found (Span.source, Reading.source).
SPEECH = "speech"
OCR = "ocr"  # the source of spans read in pictures (text in pictures)
