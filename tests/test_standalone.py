"""Every chapter runs on its own, as in a fresh Colab runtime.

``make test`` runs ``tools/nbval_alone.py``: each notebook copied alone into an empty folder outside the
repository and validated there with nbval (the ``smoke`` profile, no ``VIDPRED_HOME``), failing when a
chapter writes into the repository or prints an absolute path. The tests here check the pieces that make
that possible: every chapter is collected, and a chapter's ``setup`` finds its place with no repository.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def test_every_chapter_is_collected():
    assert len(CHAPTERS) >= 11 and all(p.name[:2].isdigit() for p in CHAPTERS)


@pytest.fixture(scope="module")
def alone():
    spec = importlib.util.spec_from_file_location("nbval_alone", ROOT / "tools" / "nbval_alone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_alone_check_fails_a_printed_path_and_a_write_into_the_repository(alone, tmp_path, monkeypatch):
    """tools/nbval_alone.py on a fake repository: one chapter prints its folder, another writes beside the
    repository's files; both fail, and the chapter that does neither passes."""
    import nbformat

    repo = tmp_path / "repo"
    (repo / "book").mkdir(parents=True)
    cells = {"01_clean": ["x = 1", "print('relative/path')"],
             "02_prints": ["import os", "print(os.getcwd())"],
             "03_writes": [f"open({str(repo / 'written.txt')!r}, 'w').write('x')"]}
    for name, sources in cells.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, repo / "book" / f"{name}.ipynb")
    monkeypatch.setattr(alone, "ROOT", repo)
    (tmp_path / "outside").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "outside"))  # where the copies' folders go
    assert alone.main(["-k", "01_clean"]) == 0
    assert alone.main(["-k", "02_prints"]) == 1
    assert alone.main(["-k", "03_writes"]) == 1 and (repo / "written.txt").exists()
    # two chapters at once, as `make test` runs them: the printed path still fails, the clean chapter alone passes
    assert alone.main(["--workers", "2", "-k", "01_clean or 02_prints"]) == 1
    assert alone.main(["--workers", "2", "-k", "01_clean"]) == 0
    with pytest.raises(SystemExit, match="--workers needs a whole number"):
        alone.take_workers(["--workers", "two"])


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
