"""Every Python snippet of the README runs as written (issue 31, 2), in the full install and in
the light one (no torch), in README order: the indexing snippet builds ``~/media/.xmr`` that
the Engine snippet then searches.

Each snippet runs as a script in a fresh process whose home holds a small ``media`` folder and
whose current folder holds the files the snippets name (``labels.txt``, ``query.jpg``,
``beach.jpg``, ``dog.jpg``, ``photo.jpg``, ``clip.wav``). The light install is this install with
the heavy packages made unimportable (as tests/test_models_light_install.py does); ``.ci/run`` also runs them
with a real light install: ``python -m tests.test_readme_snippets --python LIGHT_VENV/bin/python``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# What the README's snippets must cover between them: indexing from Python, the Engine, the models.
EXPECTED = ("indexer.index_folder(", "Engine.open(", "retrieval.create_model(")


def python_snippets(readme: Path = README) -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", readme.read_text(encoding="utf-8"), flags=re.S | re.M)


def make_place(base: Path) -> tuple[Path, Path]:
    """A home holding ``media`` (a small media folder) and a working folder holding the files the
    snippets name. Returns (home, working folder)."""
    from tests.helpers import make_media, write_audio, write_image, write_text

    home, work = base / "home", base / "work"
    make_media(home / "media", images=4, audio=2, texts=2)
    write_text(work / "labels.txt", "a dog on a beach\na cat\nrain\n")
    for n, name in enumerate(("query.jpg", "beach.jpg", "dog.jpg", "photo.jpg")):
        write_image(work / name, seed=70 + n)
    write_audio(work / "clip.wav", seed=80)
    return home, work


def run_snippets(
    base: Path, python: str = sys.executable, extra_env: dict[str, str] | None = None, readme: Path = README
) -> list[subprocess.CompletedProcess]:
    """Run every README Python snippet in order with ``python``; stops at the first that fails.

    Returns:
        One completed process per snippet run.
    """
    snippets = python_snippets(readme)
    home, work = make_place(base)
    env = {**os.environ, "HOME": str(home), "XMR_CACHE_DIR": str(base / "cache"), **(extra_env or {})}
    env.pop("XMR_INDEX", None)
    done = []
    for n, code in enumerate(snippets):
        script = work / f"snippet{n}.py"
        script.write_text(code, encoding="utf-8")
        proc = subprocess.run([python, str(script)], capture_output=True, text=True, cwd=work, env=env, timeout=600)
        done.append(proc)
        if proc.returncode != 0:
            break
    return done


def _report(snippets: list[str], done: list[subprocess.CompletedProcess]) -> str:
    last = done[-1]
    return f"README snippet {len(done)} of {len(snippets)} failed:\n{snippets[len(done) - 1]}\n{last.stderr[-3000:]}"


def _check(base: Path, python: str = sys.executable, extra_env: dict[str, str] | None = None) -> None:
    snippets = python_snippets()
    for needed in EXPECTED:
        assert any(needed in s for s in snippets), f"no README snippet calls {needed}"
    done = run_snippets(base, python, extra_env)
    assert len(done) == len(snippets) and all(p.returncode == 0 for p in done), _report(snippets, done)
    indexed = next(p for s, p in zip(snippets, done) if "index_folder(" in s)
    assert "'added': " in indexed.stdout and "'added': 0," not in indexed.stdout, indexed.stdout  # it indexed
    assert (base / "home" / "media" / ".xmr" / "manifest.json").is_file()


@pytest.mark.slow  # xmr-mini in fresh processes: run by default, left out by -m "not slow"
def test_the_readme_python_snippets_run_as_written(tmp_path: Path) -> None:
    _check(tmp_path)


@pytest.mark.slow
def test_the_readme_python_snippets_run_as_written_without_torch(tmp_path: Path) -> None:
    from tests.test_models_light_install import HEAVY, _without

    env = _without(tmp_path, HEAVY)
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "blocked" in probe.stderr, "the blocker must hold in subprocesses"
    _check(tmp_path, extra_env={"PYTHONPATH": env["PYTHONPATH"]})


def main() -> int:
    """Run the snippets with another Python (a real light install, from ``.ci/run``)."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the Python of the install to run them with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        snippets = python_snippets()
        done = run_snippets(Path(tmp), os.path.abspath(args.python))  # not resolved: a venv's python is a link
        if len(done) < len(snippets) or done[-1].returncode != 0:
            print(_report(snippets, done), file=sys.stderr)
            return 1
    print(f"the README's {len(snippets)} Python snippets ran with {args.python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
