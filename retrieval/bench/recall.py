"""Recall@k on captioned media, CLIP_benchmark's protocol.

- text->X: one query per distinct caption; a hit when an item carrying that caption is in the
  top k (items sharing an identical caption are all relevant to it).
- X->text: one query per item, over the distinct captions; a hit when any of its captions is.
- chance@k: the mean over queries of min(1, k x relevant / gallery).

Inputs: a pairs manifest (JSONL ``{"image"|"audio": path, "text": caption}``, paths relative
to the manifest), a Karpathy-split JSON (Flickr30k / MSCOCO) or an AudioCaps / Clotho CSV.
Scores come straight from the encoder, or (``via_index``) through a real index and ``Engine``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..train.metrics import first_relevant_ranks, summarize

log = logging.getLogger(__name__)


@dataclass
class Captioned:
    modality: str
    path: str
    captions: list[str]


DATASETS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "datasets"  # in a clone of xmr


def missing_manifest_hint(path: str | os.PathLike) -> str:
    """How to make a benchmark manifest that is not there: the command that prepares its set
    (``data/openmoji/test.jsonl`` -> ``python -m benchmarks.datasets.openmoji --out data/openmoji
    --cache data/cache``), else the one that prepares them all."""
    path = Path(path)
    folder = path.parent
    script = DATASETS_DIR / f"{folder.name}.py"
    cache = folder.parent / "cache"
    if folder.name and script.is_file() and folder.name not in ("all", "common", "__init__"):
        if "run_script(" in script.read_text(encoding="utf-8"):  # the common --out/--cache command line
            how = f"python -m benchmarks.datasets.{folder.name} --out {folder} --cache {cache}"
        else:
            how = f"python -m benchmarks.datasets.{folder.name} --help (it takes options of its own)"
        return f"the {folder.name} set is prepared, from a clone of xmr, by: {how}"
    return (
        "the benchmark sets are prepared, from a clone of xmr, by: "
        "python -m benchmarks.datasets.all --out data --cache data/cache (see benchmarks/README.md)"
    )


def load_captioned(path: str | os.PathLike, split: str = "test", media_dir: str | None = None) -> list[Captioned]:
    """Items and their captions from a manifest, Karpathy JSON or AudioCaps/Clotho CSV.

    Raises:
        FileNotFoundError, ValueError: no such file, or a format it cannot read.
    """
    path = Path(path)
    base = Path(media_dir) if media_dir else path.parent
    if path.suffix == ".jsonl":
        items: dict[tuple[str, str], Captioned] = {}
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                modality = "image" if "image" in row else "audio" if "audio" in row else None
                if modality is None or not isinstance(row.get("text"), str):
                    raise ValueError(f"{path}:{n}: a pairs line needs 'image' or 'audio' and 'text'")
                key = (modality, str(base / row[modality]))
                items.setdefault(key, Captioned(modality, key[1], [])).captions.append(row["text"])
        return list(items.values())
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if "images" not in data:
            raise ValueError(f"{path}: not a Karpathy-split JSON (no 'images' list)")
        out = []
        for img in data["images"]:
            if split and img.get("split", split) != split:
                continue
            file = Path(img.get("filepath", "")) / img["filename"]
            out.append(Captioned("image", str(base / file), [s["raw"].strip() for s in img["sentences"]]))
        return out
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and "file_name" in rows[0]:  # Clotho: file_name, caption_1..caption_5
            return [
                Captioned("audio", str(base / r["file_name"]), [r[c] for c in r if c.startswith("caption")])
                for r in rows
            ]
        if rows and "youtube_id" in rows[0]:  # AudioCaps: audiocap_id, youtube_id, start_time, caption
            grouped: dict[str, Captioned] = {}
            for r in rows:
                file = _audiocaps_file(base, r)
                grouped.setdefault(file, Captioned("audio", file, [])).captions.append(r["caption"])
            return list(grouped.values())
        raise ValueError(f"{path}: a CSV of neither Clotho (file_name, caption_N) nor AudioCaps (youtube_id, caption)")
    raise ValueError(f"{path}: unknown format (expected .jsonl pairs, Karpathy .json, or AudioCaps/Clotho .csv)")


def _audiocaps_file(base: Path, row: dict) -> str:
    for name in (
        f"{row['youtube_id']}_{int(float(row.get('start_time', 0)))}.wav",
        f"{row['youtube_id']}.wav",
        f"{row['audiocap_id']}.wav",
    ):
        if (base / name).exists():
            return str(base / name)
    return str(base / f"{row['youtube_id']}.wav")


def directions(
    items: list[Captioned], item_vecs: np.ndarray, texts: list[str], text_vecs: np.ndarray, chunk: int = 1024
) -> dict[str, dict[str, float]]:
    """Both directions for one modality, chunked over queries (see the module docstring)."""
    modality = items[0].modality
    index = {t: i for i, t in enumerate(texts)}
    items_of_text: list[list[int]] = [[] for _ in texts]
    texts_of_item = []
    for n, item in enumerate(items):
        mine = sorted({index[c] for c in item.captions})
        texts_of_item.append(mine)
        for t in mine:
            items_of_text[t].append(n)
    t2x = first_relevant_ranks(text_vecs, item_vecs, items_of_text, chunk)
    x2t = first_relevant_ranks(item_vecs, text_vecs, texts_of_item, chunk)
    return {
        f"text->{modality}": summarize(t2x, np.array([len(r) for r in items_of_text]), len(items)),
        f"{modality}->text": summarize(x2t, np.array([len(r) for r in texts_of_item]), len(texts)),
    }


def recall(items: list[Captioned], encoder: Any, via_index: bool = False) -> dict[str, dict[str, float]]:
    """Recall of ``encoder`` on ``items`` in every direction present; ``via_index`` builds a real
    index (Flat) of the items and the captions and scores through ``Engine``."""
    out: dict[str, dict[str, float]] = {}
    for modality in ("image", "audio"):
        mine = [it for it in items if it.modality == modality]
        if not mine:
            continue
        texts = list(dict.fromkeys(c for it in mine for c in it.captions))
        if via_index:
            out.update(_recall_via_index(mine, texts, encoder))
            continue
        text_vecs = encoder.encode_text(texts)
        paths = [it.path for it in mine]
        item_vecs = encoder.encode_image(paths) if modality == "image" else encoder.encode_audio(paths)
        out.update(directions(mine, item_vecs, texts, text_vecs))
    return out


def _recall_via_index(items: list[Captioned], texts: list[str], encoder: Any) -> dict[str, dict[str, float]]:
    """Index the items (linked into a temporary folder) and the captions (a texts file), then
    rank through ``Engine.search_batch``: every caption to the items, every item to the captions."""
    import indexer

    from ..search.engine import Engine

    modality = items[0].modality
    with tempfile.TemporaryDirectory(prefix="xmr-recall-") as tmp:
        root = Path(tmp) / "media"
        root.mkdir()
        for n, it in enumerate(items):
            os.symlink(os.path.abspath(it.path), root / f"{n:07d}{Path(it.path).suffix.lower()}")
        texts_file = Path(tmp) / "captions.txt"
        texts_file.write_text("\n".join(" ".join(t.split()) for t in texts) + "\n", encoding="utf-8")
        indexer.index_folder(
            root,
            encoder,
            indexer.IndexOptions(index_dir=str(Path(tmp) / "index"), texts=[str(texts_file)], links="follow"),
        )  # the folder links to the media
        with Engine.open(Path(tmp) / "index", model=encoder) as engine:
            t2x_hits = engine.search_batch([{"text": t} for t in texts], to=modality, k=len(items))
            x2t_hits = engine.search_batch([{modality: it.path} for it in items], to="text", k=len(texts))
    index = {t: i for i, t in enumerate(texts)}
    texts_of_item = [{index[c] for c in it.captions} for it in items]
    items_of_text: list[set[int]] = [set() for _ in texts]
    for n, mine in enumerate(texts_of_item):
        for t in mine:
            items_of_text[t].add(n)
    t2x = np.array(
        [_first(hits, items_of_text[q], lambda h: int(Path(h.path).stem)) for q, hits in enumerate(t2x_hits)]
    )
    x2t = np.array([_first(hits, texts_of_item[q], lambda h: h.line - 1) for q, hits in enumerate(x2t_hits)])
    return {
        f"text->{modality}": summarize(t2x, np.array([len(r) for r in items_of_text]), len(items)),
        f"{modality}->text": summarize(x2t, np.array([len(r) for r in texts_of_item]), len(texts)),
    }


def _first(hits: list, relevant: set[int], key) -> int:  # noqa: ANN001
    for hit in hits:
        if key(hit) in relevant:
            return hit.rank
    return len(hits) + 1


def run_recall(
    manifests: list[str],
    model: str,
    via_index: bool = False,
    split: str = "test",
    media_dir: str | None = None,
    out_dir: str | None = None,
    encoder: Any = None,
) -> dict[str, Any]:
    """Score ``model`` on each manifest; write JSON, Markdown and a PNG of R@k bars to ``out_dir``."""
    from .report import machine_info, markdown_table, write_outputs

    if encoder is None:
        from ..models.registry import create_model, inference_runtime

        encoder = create_model(model, runtime=inference_runtime(model))  # as queries run: no torch for xmr-mini
    sets: dict[str, dict[str, dict[str, float]]] = {}
    for manifest in manifests:
        items = load_captioned(manifest, split=split, media_dir=media_dir)
        if not items:
            raise ValueError(f"{manifest}: no items")
        missing = [it.path for it in items if not os.path.exists(it.path)]
        if missing:
            raise FileNotFoundError(f"{manifest}: {len(missing)} media files not found, e.g. {missing[0]}")
        sets[str(manifest)] = recall(items, encoder, via_index=via_index)
    import hashlib

    data = {str(m): hashlib.sha256(Path(m).read_bytes()).hexdigest() for m in manifests}  # which manifests, exactly
    payload: dict[str, Any] = {
        "machine": machine_info(),
        "model": model,
        "weights_hash": encoder.weights_hash,
        "via_index": via_index,
        "data_sha256": data,
        "sets": sets,
    }
    if out_dir:
        rows = [
            {"set": Path(m).parent.name + "/" + Path(m).name, "direction": d, **r}
            for m, res in sets.items()
            for d, r in res.items()
        ]
        table = markdown_table(
            rows, ["set", "direction", "R@1", "R@5", "R@10", "median_rank", "queries", "gallery", "chance@10"]
        )
        stem = "recall-" + model.replace(":", "_").replace("/", "_").replace("@", "_")
        payload["files"] = {k: str(v) for k, v in write_outputs(out_dir, stem, payload, table).items()}
        plot_recall(rows, Path(out_dir) / f"{stem}.png", model)
    return payload


def plot_recall(rows: list[dict[str, Any]], path: Path, model: str) -> None:
    from ..extras import pyplot

    plt = pyplot(path)
    if plt is None:
        return None

    labels = [f"{r['set']}\n{r['direction']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4.5))
    for n, k in enumerate((1, 5, 10)):
        ax.bar(x + (n - 1) * 0.27, [r[f"R@{k}"] for r in rows], 0.27, label=f"R@{k}")
    ax.scatter(x + 0.27, [r["chance@10"] for r in rows], color="black", marker="_", s=200, label="chance@10", zorder=3)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("recall (%)")
    ax.set_title(f"Recall@k, {model}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
