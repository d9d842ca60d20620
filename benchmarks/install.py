"""Install size and time, light and full, and the cold CLI text query against `import torch`.

    python benchmarks/install.py install [--full]   # fresh venvs: `pip install .` (and '.[dev]')
    python benchmarks/install.py cold [--runs 7]    # cold `xmr search` (light venv) vs `import torch`

``install`` makes each venv anew under ``--work`` and times ``pip install`` (pip's download
cache warm or not, as the host has it: say which), then sizes the venv with ``du``. ``cold``
indexes a small folder with the light venv's ``xmr``, then alternates, ``--runs`` times, one
``xmr search`` in a new process (the light venv) and one ``python -c "import torch"`` (this
Python, which must have torch), and reports the medians and their ratio: hosts here differ
up to 3x in speed, so only the ratio of one run means anything. Results go to
``benchmarks/results/install.json`` (each mode updates its own part).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrieval.bench.report import machine_info  # noqa: E402

HEAVY = ["torch", "torchvision", "open_clip", "transformers", "sentence_transformers", "triton", "nvidia"]


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _install(venv: Path, target: str) -> dict:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.monotonic()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", target], cwd=ROOT, check=True)
    seconds = time.monotonic() - started
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    probe = "import importlib.util as u, json; print(json.dumps([m for m in %r if u.find_spec(m)]))" % HEAVY
    heavy = json.loads(
        subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True).stdout
    )
    return {"target": target, "seconds": round(seconds, 1), "bytes": _du(venv), "heavy_packages": heavy}


def _median_run(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def _cold(light: Path, work: Path, runs: int) -> dict:
    from tests.helpers import make_media

    media = work / "cold-media"
    shutil.rmtree(media, ignore_errors=True)
    make_media(media, images=20, audio=5, texts=5)
    xmr = str(light / "bin" / "xmr")
    subprocess.run([xmr, "index", str(media)], check=True, capture_output=True)
    search = [xmr, "search", "a dog on a beach", "--index", str(media / ".xmr")]
    torch = [sys.executable, "-c", "import torch"]
    _median_run(search), _median_run(torch)  # page cache warm for both
    query, imports = [], []
    for _ in range(runs):
        query.append(_median_run(search))
        imports.append(_median_run(torch))
    q, t = statistics.median(query), statistics.median(imports)
    return {
        "runs": runs,
        "query_s": round(q, 3),
        "import_torch_s": round(t, 3),
        "ratio": round(q / t, 3),
        "query_all_s": [round(x, 3) for x in query],
        "import_torch_all_s": [round(x, 3) for x in imports],
        "goal_ratio": 0.35,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["install", "cold"])
    parser.add_argument("--full", action="store_true", help="also the full install ('.[dev]', several GB)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--work", default="/tmp/xmr-install-bench", help="where the venvs go")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "install.json"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    payload = json.loads(out.read_text()) if out.exists() else {}
    if args.mode == "install":
        payload["light"] = _install(work / "light", ".")
        print("light", payload["light"], flush=True)
        if args.full:
            payload["full"] = _install(work / "full", ".[dev]")
            print("full", payload["full"], flush=True)
        payload["install_machine"] = machine_info()
    else:
        light = work / "light"
        if not (light / "bin" / "xmr").exists():
            sys.exit(f"no light venv at {light}: run `python benchmarks/install.py install` first")
        payload["cold_query"] = _cold(light, work, args.runs)
        payload["cold_machine"] = machine_info()
        print(payload["cold_query"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
