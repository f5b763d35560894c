"""One setting names the repository (``_config.yml`` ``repository.url``, which drives the book's launch and
repository buttons); every install line, the package metadata, the README and the citation agree with it.
The ``notebook`` extra is what the chapters need, and ``make lab`` is wired."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from vidpred.data.exercise import load_sources

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
URL = REPOSITORY["url"].rstrip("/")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
GITHUB = re.compile(r"https?://github\.com/[\w./-]+")
# the real exercise videos' repositories at the pinned commits (attribution, never the footage itself)
SOURCE_LINKS = {f"https://github.com/{s.repo}/tree/{s.commit}" for s in load_sources()}
INSTALL = ("try:  # Colab: install the package first (the book's own environment already has it)\n"
           "    import vidpred\n"
           "except ImportError:\n"
           f'    %pip install -q "vidpred[notebook] @ git+{URL}.git"\n')


def cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_repository_setting():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL), URL


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_installs_the_notebook_extra_from_the_repository(notebook):
    code = [source(c) for c in cells(notebook) if c["cell_type"] == "code"]
    assert code[0].startswith(INSTALL), f"{notebook.name}: the first code cell is not the install guard:\n{code[0]}"
    assert sum("%pip" in c or "!pip" in c for c in code) == 1, f"{notebook.name} installs more than once"
    links = [link for c in cells(notebook) for link in GITHUB.findall(source(c))]
    others = [link for link in links if not link.startswith(URL) and link not in SOURCE_LINKS]
    assert not others, f"{notebook.name} links another repository (not a pinned data source): {others}"


def test_a_pinned_source_link_is_exactly_its_repository_at_its_commit():
    # the one kind of foreign link a chapter may hold: attribution of the real videos, at the commit the package pins
    assert SOURCE_LINKS and all(re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/tree/[0-9a-f]{40}", s)
                                for s in SOURCE_LINKS), SOURCE_LINKS
    assert not any(link.startswith(URL) for link in SOURCE_LINKS)


def test_package_metadata_names_the_repository():
    urls = PYPROJECT["project"]["urls"]
    assert urls["Repository"] == URL and urls["Issues"] == f"{URL}/issues"
    assert all(u.startswith(URL) for u in urls.values()), urls


def test_readme_and_citation_link_the_repository():
    readme = (ROOT / "README.md").read_text()
    links = GITHUB.findall(readme)
    assert links and all(link.startswith(URL) for link in links), links
    colab = re.findall(r"https://colab\.research\.google\.com/github/[\w./-]+", readme)
    prefix = f"https://colab.research.google.com/github/{URL.removeprefix('https://github.com/')}/blob/{REPOSITORY['branch']}/"
    assert colab and all(link.startswith(prefix) for link in colab), colab
    for link in colab:  # a chapter that exists
        assert (ROOT / link.removeprefix(prefix)).exists(), link
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["repository-code"] == URL


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_extras_build_on_the_notebook_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("book", "lab", "dev"):
        assert "vidpred[notebook]" in extras[extra], extra
    assert "jupyter-book" in requirement_names(extras["book"]) and "jupyterlab" in requirement_names(extras["lab"])
    assert not requirement_names(extras["notebook"]) & {"jupyter-book", "sphinx", "jupyterlab"}  # Colab needs no builder
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split())
    assert pins["jupyterlab"] == "4.6.4"


def distribution_closure(names: set[str]) -> set[str]:
    """The distributions ``names`` pull in (their installed requirements, without extras), transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [n for r, n in zip(requires, requirement_names(requires)) if "extra ==" not in r]
    return seen


def chapter_imports() -> set[str]:
    """The top-level modules the chapters import (magics left out)."""
    modules = set()
    for notebook in CHAPTERS:
        for cell in cells(notebook):
            if cell["cell_type"] != "code":
                continue
            code = "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in source(cell).splitlines())
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules.add(node.module.split(".")[0])
    return modules


def test_the_notebook_extra_covers_what_the_chapters_import():
    """Every module a chapter imports comes from Python, the package, or what ``vidpred[notebook]`` installs.
    (pandas' ``.style`` also needs jinja2, which pandas does not require: the extra names it.)"""
    allowed = distribution_closure(requirement_names(PYPROJECT["project"]["dependencies"])
                                   | requirement_names(PYPROJECT["project"]["optional-dependencies"]["notebook"]))
    providers = metadata.packages_distributions()
    missing = {}
    for module in chapter_imports() - set(sys.stdlib_module_names) - {"vidpred"}:
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not dists & allowed:
            missing[module] = sorted(dists)
    assert not missing, f"chapters import modules the notebook extra does not install: {missing}"
    assert "jinja2" in requirement_names(PYPROJECT["project"]["optional-dependencies"]["notebook"])


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_lab_installs_the_lab_extra_registers_the_kernel_and_starts_jupyterlab(tmp_path):
    venv = tmp_path / "venv"  # a venv that does not exist, so make shows every step
    lab = subprocess.run(["make", "-n", "lab", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    steps = lab.stdout.splitlines()
    wanted = [f"{venv}/bin/python -m pip install -q -c constraints.txt -e \".[book,app,ucf101,dev]\"",
              f"{venv}/bin/python -m pip install -q -c constraints.txt -e \".[lab]\"",
              f"{venv}/bin/python -m ipykernel install --sys-prefix --name vidpred --display-name \"vidpred (.venv)\"",
              f"{venv}/bin/jupyter lab {'--allow-root ' if os.getuid() == 0 else ''}book/"]
    assert all(step in steps for step in wanted), lab.stdout
    assert [steps.index(step) for step in wanted] == sorted(steps.index(step) for step in wanted)
    test = subprocess.run(["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "[lab]" not in test.stdout and "jupyter lab" not in test.stdout  # make test does not install JupyterLab
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme.split("## The package")[0], "make lab belongs in the README's quick start"
