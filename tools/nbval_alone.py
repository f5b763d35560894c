"""nbval on every chapter, each alone in an empty folder, as in a fresh Colab runtime.

    python tools/nbval_alone.py [--workers N] [more pytest arguments]

Each notebook of book/ is copied alone into its own empty folder outside the repository and validated
there with nbval (``--nbval-lax``: every cell runs without error), in the ``smoke`` profile unless
``VIDPRED_PROFILE`` says otherwise and without ``VIDPRED_HOME``. So a chapter may rely on the installed
package and nothing else: not on another chapter's results, not on files of the repository (the real data
beside the project is not found from there, and the chapter must say so and go on). The run also fails
when a chapter writes into the repository or prints an absolute path (the repository's or its folder's).

``make test`` runs this, then builds the smoke book, which executes every chapter again inside the
repository, where chapters share results and find the real data (a cell error fails that build:
``nb_execution_raise_on_error``). Those are the two places a chapter runs; executing the chapters a third
time, with nbval inside the repository, checked nothing the book build does not.

``--workers N`` validates N chapters at once (pytest-xdist; a chapter's cells stay together, in order, in one
kernel: ``--dist loadfile``), each kernel on the machine's cores shared out (``OMP_NUM_THREADS``, unless set):
a chapter spends much of its time starting, importing and drawing, on one core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_WATCHED = {".git", ".venv", "_build", "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"}

# A pytest plugin for the copies' folder: a cell whose shown output names a forbidden path fails.
CONFTEST = '''
import json, os
import pytest

FORBIDDEN = json.loads(os.environ["VIDPRED_ALONE_FORBIDDEN"])
SHOWN = ("text/plain", "text/markdown", "text/html")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed:
        return
    outputs = getattr(item, "test_outputs", None) or []  # nbval keeps each cell's outputs there
    text = "".join(str(o.get("text", "")) + "".join(str(o.get("data", {}).get(kind, "")) for kind in SHOWN)
                   for o in outputs)
    for path in FORBIDDEN:
        if path in text:
            report.outcome = "failed"
            report.longrepr = f"{item.nodeid}: the output prints the absolute path {path}; print a relative one"
            return
'''


def repository_files() -> dict[str, tuple[int, int]]:
    """Every file of the working tree (outside caches and build folders) with its size and mtime."""
    files = {}
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in NOT_WATCHED and not s.endswith(".egg-info")]
        for name in names:
            path = Path(folder, name)
            stat = path.stat()
            files[str(path.relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return files


def take_workers(argv: list[str]) -> tuple[int, list[str]]:
    """``--workers N`` out of ``argv``: (N, the other arguments); 1 without it."""
    if "--workers" not in argv:
        return 1, argv
    i = argv.index("--workers")
    if i + 1 == len(argv) or not argv[i + 1].isdigit() or int(argv[i + 1]) < 1:
        got = argv[i + 1] if i + 1 < len(argv) else "nothing"
        raise SystemExit(f"--workers needs a whole number of chapters to run at once, 1 or more; got {got}")
    return int(argv[i + 1]), argv[:i] + argv[i + 2:]


def main(argv: list[str]) -> int:
    workers, argv = take_workers(argv)
    chapters = sorted((ROOT / "book").glob("*.ipynb"))
    if not chapters:
        print(f"no chapter found in {ROOT / 'book'}", file=sys.stderr)
        return 2
    place = Path(tempfile.mkdtemp(prefix="vidpred-alone-")).resolve()
    if place.is_relative_to(ROOT) or any((f / "_config.yml").exists() for f in place.parents):
        print(f"{place} is not an empty place outside the repository; set TMPDIR elsewhere", file=sys.stderr)
        return 2
    copies = []
    for chapter in chapters:
        folder = place / chapter.stem
        folder.mkdir()
        copies.append(str(shutil.copy(chapter, folder)))
    (place / "conftest.py").write_text(CONFTEST)
    env = {k: v for k, v in os.environ.items() if k != "VIDPRED_HOME"}
    env.setdefault("VIDPRED_PROFILE", "smoke")
    env["VIDPRED_ALONE_FORBIDDEN"] = json.dumps([str(ROOT), str(place)])
    parallel = []
    if workers > 1:
        parallel = ["-n", str(workers), "--dist", "loadfile"]
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    before = repository_files()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                             "--rootdir", str(place), *parallel, *copies, *argv], cwd=place, env=env)
    after = repository_files()
    new = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    code = result.returncode
    if new or changed:
        print(f"a chapter run alone wrote into the repository: new {new[:5]}, changed {changed[:5]}", file=sys.stderr)
        code = code or 1
    if code == 0:
        shutil.rmtree(place, ignore_errors=True)
    else:
        print(f"the chapters' folders are kept for a look: {place}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
