"""The built book in headless Chromium: every chapter renders, every asset exists, no internal link is broken.

Run after the book build, with BOOK_HTML pointing at its html folder (``make test`` does both).
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "img", "video", "source", "script", "link"):
                self.refs.append((tag, attrs[key]))


class Text(HTMLParser):
    """The text a reader sees (scripts and styles left out)."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(parser.parts)


def executed_chapters() -> list[str]:
    return [c for c in chapters() if (ROOT / f"{c}.ipynb").exists()]


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_the_build_exists():
    assert (HTML / "index.html").exists(), f"no built book at {HTML}: build it first (make test does)"


@pytest.mark.parametrize("chapter", chapters())
def test_chapter_assets_and_links(chapter):
    page = HTML / f"{chapter}.html"
    assert page.exists(), f"{page} was not built"
    parsed = parse(page)
    text = page.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" not in text, f"{chapter} shows a traceback"
    for tag, ref in parsed.refs:
        parts = urlsplit(ref)
        if parts.scheme in ("http", "https", "mailto", "data", "javascript") or ref.startswith("//"):
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        assert target.exists(), f"{chapter}: <{tag}> points at a missing {ref}"
        if parts.fragment and target.suffix == ".html":
            ids = parse(target).ids if target != page else parsed.ids
            assert parts.fragment in ids, f"{chapter}: link {ref} names an anchor that does not exist"


def test_every_executed_chapter_has_outputs():
    for chapter in chapters():
        if (ROOT / f"{chapter}.ipynb").exists():
            text = (HTML / f"{chapter}.html").read_text(encoding="utf-8")
            assert "cell_output" in text, f"{chapter} was built without executing its cells"
            assert not re.search(r"\b(nan|NaN)\b\s*%", text), f"{chapter} prints NaN percentages"


@pytest.mark.parametrize("chapter", executed_chapters())
def test_every_chapter_ends_with_a_summary_and_exercises(chapter):
    html = (HTML / f"{chapter}.html").read_text(encoding="utf-8")
    summary = re.search(r"<h2>Summary<a class=\"headerlink\"", html)
    exercises = re.search(r"<h2>Exercises<a class=\"headerlink\"", html)
    assert summary and exercises and summary.start() < exercises.start(), f"{chapter}: no Summary then Exercises"
    items = re.findall(r"<li>", html[exercises.end():].split("</ol>")[0])
    assert 2 <= len(items) <= 3, f"{chapter}: {len(items)} exercises"


BUILD_PATHS = re.compile(r"(?<![\w.:/-])/(work|tmp|home|root|usr|opt|var)/")


@pytest.mark.parametrize("chapter", chapters())
def test_no_page_shows_a_path_of_the_build_machine(chapter):
    text = page_text(HTML / f"{chapter}.html")
    found = [text[max(0, m.start() - 40) : m.end() + 40] for m in BUILD_PATHS.finditer(text)]
    assert not found, f"{chapter} shows absolute paths: {found[:3]}"


# Everything in the article fits its text column, except inside a box that scrolls sideways and itself fits
# (a long code line); tables fit without scrolling; videos and animations are made to fit, so they play at
# their own size (legible).
FIT_THE_COLUMN = """() => {
    const article = document.querySelector("article.bd-article") || document.querySelector("main");
    const box = article.getBoundingClientRect(), style = getComputedStyle(article);
    const column = {left: box.left + parseFloat(style.paddingLeft), right: box.right - parseFloat(style.paddingRight)};
    column.width = column.right - column.left;  // the content box: the text column
    const name = el => el.tagName.toLowerCase() + (el.className && typeof el.className === "string"
        ? "." + el.className.trim().split(/\\s+/).slice(0, 2).join(".") : "");
    const scrolls = el => {
        for (let up = el.parentElement; up && up !== article; up = up.parentElement) {
            const box = up.getBoundingClientRect();
            if (["auto", "scroll", "hidden"].includes(getComputedStyle(up).overflowX)
                && box.right <= column.right + 1 && box.left >= column.left - 1) return true;
        }
        return false;
    };
    const tooWide = [];
    for (const el of article.querySelectorAll("*")) {
        const box = el.getBoundingClientRect();
        if (box.width > 0 && (box.right > column.right + 1 || box.left < column.left - 1) && !scrolls(el))
            tooWide.push(`${name(el)}: ${Math.round(box.width)} px`);
    }
    for (const table of article.querySelectorAll("table")) {  // a table is read whole, not scrolled
        const width = table.getBoundingClientRect().width;
        if (width > column.width + 1) tooWide.push(`table: ${Math.round(width)} px`);
    }
    const shrunk = [];
    for (const el of article.querySelectorAll("video, .animation img")) {
        const natural = el.videoWidth || el.naturalWidth;
        const shown = el.getBoundingClientRect().width;
        if (natural && shown < 0.95 * natural) shrunk.push(`${name(el)}: ${natural} px shown at ${Math.round(shown)}`);
    }
    return {column: Math.round(column.width), too_wide: tooWide, shrunk: shrunk,
            page_overflow: document.documentElement.scrollWidth - window.innerWidth};
}"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it where apt-get works)")
def test_pages_render_in_chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--allow-file-access-from-files"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        failures = []
        page.on("requestfailed", lambda r: failures.append(r.url) if r.url.startswith("file:") else None)
        for chapter in chapters():
            page.goto((HTML / f"{chapter}.html").as_uri())
            heading = page.locator("article h1").first
            assert heading.is_visible(), f"{chapter}: no visible title"
            broken = page.evaluate("""() => [...document.images]
                .filter(img => img.complete && img.naturalWidth === 0).map(img => img.src.slice(0, 80))""")
            assert not broken, f"{chapter}: images that do not load: {broken}"
            if chapter.endswith("08_evaluation"):
                assert page.locator(".animation").count() >= 1, "the static animation is missing"
                assert page.locator(".cell_output", has_text="The viewer as an animation").count() == 1, "no label"
            if chapter.endswith("09_video"):
                ready = page.evaluate("""() => Promise.all([...document.querySelectorAll('video')].map(v =>
                    v.readyState >= 1 ? v.duration : new Promise(ok => { v.onloadedmetadata = () => ok(v.duration);
                    v.onerror = () => ok(-1); setTimeout(() => ok(-2), 5000); })))""")
                assert ready and all(d > 0 for d in ready), f"videos do not load in Chromium: {ready}"
            layout = page.evaluate(FIT_THE_COLUMN)
            assert layout["page_overflow"] <= 0, f"{chapter}: the page scrolls sideways by {layout['page_overflow']} px"
            assert not layout["too_wide"], f"{chapter}: wider than the text column ({layout['column']} px): " \
                                           f"{layout['too_wide'][:5]}"
            assert not layout["shrunk"], f"{chapter}: videos or animations shrunk below their size " \
                                         f"(illegible): {layout['shrunk'][:5]}"
        page.screenshot(path=str(HTML / "last-page.png"))
        browser.close()
        assert not failures, f"local files that failed to load: {failures[:5]}"


def math_chapters() -> list[str]:
    """Chapters whose built page holds an equation (Sphinx marks each with the class ``math``)."""
    return [c for c in chapters() if 'class="math' in (HTML / f"{c}.html").read_text(encoding="utf-8")]


def test_mathjax_is_served_by_the_build():
    chapters_with_math = math_chapters()
    assert chapters_with_math, "no page holds an equation: the check below would check nothing"
    for chapter in chapters_with_math:
        scripts = [ref for tag, ref in parse(HTML / f"{chapter}.html").refs if tag == "script" and "mathjax" in ref.lower()]
        assert scripts, f"{chapter}: no MathJax script, its equations show as TeX"
        remote = [ref for ref in scripts if urlsplit(ref).scheme or ref.startswith("//")]
        assert not remote, f"{chapter}: MathJax comes from {remote[0]}, so offline its equations show as TeX"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it where apt-get works)")
def test_equations_render_offline_in_chromium():
    """MathJax typesets every equation with no network (the browser gets none here), and the display equations fit
    the text column."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--allow-file-access-from-files"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        for chapter in math_chapters():
            page.goto((HTML / f"{chapter}.html").as_uri())
            n_math = page.locator(".math").count()
            page.wait_for_function("n => document.querySelectorAll('mjx-container').length >= n", arg=n_math,
                                   timeout=15_000)
            raw = page.evaluate("""() => [...document.querySelectorAll('.math')]
                .filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 40))""")
            assert not raw, f"{chapter}: equations left as TeX: {raw[:3]}"
            wide = page.evaluate("""() => { const column = document.querySelector('article').getBoundingClientRect();
                return [...document.querySelectorAll('mjx-container[display="true"]')]
                    .filter(el => el.getBoundingClientRect().width > column.width + 1).length; }""")
            assert not wide, f"{chapter}: {wide} display equations are wider than the text column"
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it where apt-get works)")
def test_numbers_in_tables_are_right_aligned_in_chromium():
    """In the tables the book draws (``viz.table``, ids ``T_…``), the cells of a numeric column (set in tabular
    figures) are right-aligned, so magnitudes line up; a table-wide rule once outranked the per-cell one and left
    them all flush left. (A column that mixes text and numbers, as chapter 1's profile table, stays left.)"""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                  "--allow-file-access-from-files"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        checked = 0
        for chapter in chapters():
            page.goto((HTML / f"{chapter}.html").as_uri())
            cells = page.evaluate("""() => [...document.querySelectorAll('table[id^="T_"] td')]
                .filter(td => getComputedStyle(td).fontVariantNumeric.includes('tabular-nums'))
                .map(td => [td.innerText.trim(), getComputedStyle(td).textAlign])""")
            checked += len(cells)
            left = [text for text, align in cells if align != "right"]
            assert not left, f"{chapter}: {len(left)} of {len(cells)} numbers not right-aligned, e.g. {left[:5]}"
        assert checked, "no table of the book has a numeric column: the check above would check nothing"
        browser.close()
