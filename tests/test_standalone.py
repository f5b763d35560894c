"""Every chapter runs on its own, as in a fresh Colab runtime.

Each notebook is copied alone into an empty folder outside the repository and executed there (kernel
python3, the ``smoke`` profile, no ``VIDPRED_HOME``): a chapter may rely on the installed package and
nothing else — not on another chapter's results, not on files of the repository. Nor may it write into
the repository.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
NOT_WATCHED = {".git", ".venv", "_build", "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"}


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


def test_every_chapter_is_collected():
    assert len(CHAPTERS) >= 11 and all(p.name[:2].isdigit() for p in CHAPTERS)


@pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")
@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_alone_in_an_empty_folder(notebook, tmp_path):
    folder = tmp_path / "colab"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(ROOT)
    assert not any((f / "_config.yml").exists() for f in (folder, *folder.parents)), "not an empty place"
    copy = Path(shutil.copy(notebook, folder))
    env = {k: v for k, v in os.environ.items() if k != "VIDPRED_HOME"} | {"VIDPRED_PROFILE": "smoke"}
    before = repository_files()

    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=1200, resources={"metadata": {"path": str(folder)}})
    client.execute(env=env, cwd=str(folder))  # raises CellExecutionError with the cell and its traceback

    after = repository_files()
    new = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    assert not new and not changed, f"{notebook.name} wrote into the repository: new {new[:5]}, changed {changed[:5]}"
    shown = ("text/plain", "text/markdown", "text/html")
    outputs = "".join(str(o.get("text", "")) + "".join(str(o.get("data", {}).get(kind, "")) for kind in shown)
                      for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    for where in (ROOT, folder.resolve()):
        assert str(where) not in outputs, f"{notebook.name} prints the absolute path {where}"


def test_project_root_falls_back_to_the_working_folder(tmp_path, monkeypatch):
    from vidpred.book import project_root, setup

    monkeypatch.delenv("VIDPRED_HOME", raising=False)
    assert project_root(ROOT / "book") == ROOT  # the repository: the folder with _config.yml and vidpred/
    monkeypatch.chdir(tmp_path)
    assert project_root() == tmp_path.resolve()  # a fresh Colab runtime: the notebook's folder
    env = setup(profile="smoke", quiet=True)
    assert env.runs == tmp_path.resolve() / "runs" / "smoke"
    monkeypatch.setenv("VIDPRED_HOME", str(tmp_path / "home"))
    assert project_root() == tmp_path / "home"


def test_setup_prints_no_absolute_path(tmp_path, monkeypatch, capsys):
    from vidpred.book import setup

    monkeypatch.delenv("VIDPRED_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    setup(profile="smoke")
    assert "runs: runs/smoke" in capsys.readouterr().out
    monkeypatch.chdir(ROOT / "book")  # as the book build runs a chapter
    setup(profile="smoke")
    printed = capsys.readouterr().out
    assert "runs: ../runs/smoke" in printed and str(ROOT) not in printed
