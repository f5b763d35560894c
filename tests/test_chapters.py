"""The shape every chapter shares (STYLE.md): the same opening, a Summary and two or three Exercises at the
end, and code that fits the page. Checked on the notebooks themselves; tests/pages checks the built pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
PAGE_WIDTH = 88  # characters of code a page shows without a scroll bar
HIDDEN = {"remove-input", "remove-cell", "hide-input"}


def cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_the_opening(notebook):
    title, setup, overview = cells(notebook)[:3]
    assert title["cell_type"] == "markdown" and source(title).startswith("# ")
    assert setup["cell_type"] == "code" and "env = setup()" in source(setup)
    assert all(f"**{part}.**" in source(overview) for part in ("Overview", "Prerequisites", "Time to learn"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_ends_with_a_summary_and_exercises(notebook):
    markdown = [source(c) for c in cells(notebook) if c["cell_type"] == "markdown"]
    last = markdown[-1]
    assert "\n## Summary\n" in f"\n{last}" and "\n## Exercises\n" in last, f"{notebook.name} does not end with them"
    summary, exercises = last.split("## Summary", 1)[1].split("## Exercises")
    assert len(re.findall(r"^\* ", summary, re.M)) >= 2, f"{notebook.name}: a summary of at least two points"
    assert 2 <= len(re.findall(r"^\d\. ", exercises, re.M)) <= 3, f"{notebook.name}: two or three exercises"
    assert sum("## Summary" in m or "## Exercises" in m for m in markdown) == 1


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_shown_code_fits_the_page(notebook):
    long = [(i, line) for i, c in enumerate(cells(notebook))
            if c["cell_type"] == "code" and not HIDDEN & set(c["metadata"].get("tags", []))
            for line in source(c).splitlines() if len(line) > PAGE_WIDTH]
    assert not long, f"{notebook.name}: lines over {PAGE_WIDTH} characters (cell, line): {long[:3]}"


SHOWN_ONLY_LAST = {"table"}  # vidpred.viz.table returns a Styler: a page shows it only as a cell's last value


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_table_reaches_the_page(notebook):
    """A ``table(...)`` that is not a cell's last statement (or sits inside a loop) is computed and dropped:
    chapter 7 built two tables nobody saw. Such a call goes inside ``display(...)``."""
    import ast

    lost = []
    for i, cell in enumerate(cells(notebook)):
        if cell["cell_type"] != "code":
            continue  # IPython's magics and shell lines become a no-op of the same indentation
        code = "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in source(cell).splitlines())
        body = ast.parse(code).body
        for node in ast.walk(ast.Module(body=body, type_ignores=[])):
            if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) in SHOWN_ONLY_LAST and node is not body[-1]):
                lost.append((i, node.lineno))
    assert not lost, f"{notebook.name}: table(...) not shown (cell, line): {lost}; wrap it in display(...)"


BIB_KEYS = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M))
CITED_NAMES = {"OpenSTL": "tan2023openstl", "Moving MNIST": "srivastava2015lstm", "UCF101": "soomro2012ucf101"}


def test_one_citation_style():
    """{cite} roles with keys of references.bib; no hand-written "Author et al. (year)"; the benchmark and the
    datasets the text names are cited on every page that names them (each chapter also stands alone)."""
    pages = {p.name: "\n".join(source(c) for c in cells(p) if c["cell_type"] == "markdown") for p in CHAPTERS}
    pages["intro.md"] = (ROOT / "book" / "intro.md").read_text()
    for name, text in pages.items():
        text = re.sub(r"(\{cite(?::\w+)?\})`([^`]+)`", r"\1<\2>", text)  # keys kept as {cite}<key>
        text = re.sub(r"```.*?```|`[^`]*`", "", text, flags=re.S)  # code is not text
        keys = set(re.findall(r"\{cite(?::\w+)?\}<([^>]+)>", text))
        assert {k.strip() for key in keys for k in key.split(",")} <= BIB_KEYS, f"{name}: unknown keys"
        assert not re.search(r"et al\.?,? \(?\d{4}", text), f"{name} cites by hand"
        for named, key in CITED_NAMES.items():
            if named in text:
                assert f"<{key}>" in text, f"{name} names {named} without citing {key}"
