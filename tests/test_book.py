"""The curriculum as a website (`make book`), checked in a real browser.

The site is built once (tools/build_book.py, into a temporary folder), served from 127.0.0.1 and visited page
by page in headless Chromium: every page loads without console errors, uncaught errors, failed requests or
requests off the site; every internal link reaches an existing page and anchor; every image loads; each
notebook's page shows its first heading and exactly the plots stored in the notebook; math is typeset by the
bundled MathJax; exercises and solutions are marked and linked both ways. A screenshot of chapter 5 at its
loss plot goes to _build/screenshots/book.png.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pytest
from browser import WEB_INSTALL, chromium_or_skip, serve_directory, watch_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "_build" / "screenshots" / "book.png"
CHAPTER_EXERCISE = re.compile(r"^### Exercise ([A-Z0-9]+\.\d+) — ", re.M)
SOLUTION_EXERCISE = re.compile(r"^## Exercise ([A-Z0-9]+\.\d+) — ", re.M)

# What the browser reads from each page after it has loaded and its math is typeset.
PAGE_FACTS = """async () => {
  for (const img of document.images) img.loading = "eager";
  await Promise.all([...document.images].map(img => img.complete ? null
    : new Promise(done => { img.onload = img.onerror = done; })));
  const math = document.querySelectorAll(".math").length;
  if (math && window.MathJax && MathJax.startup) await MathJax.startup.promise;
  const h1 = document.querySelector("article h1");
  const title = h1 ? h1.cloneNode(true) : null;
  if (title) title.querySelectorAll(".headerlink").forEach(link => link.remove());
  return {
    title: title ? title.textContent.trim() : null,
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id),
    images: [...document.images].map(img => [img.getAttribute("src"), img.naturalWidth]),
    plots: document.querySelectorAll(".cell_output img").length,
    math: math,
    typeset: document.querySelectorAll(".math mjx-container").length,
    math_errors: document.querySelectorAll("mjx-merror").length,
    exercises: [...document.querySelectorAll("section.exercise")].map(s => [
      s.querySelector("span[id^=exercise-]")?.id ?? "",
      [...s.querySelectorAll("p.exercise-link a")].map(a => a.href)]),
    solutions: [...document.querySelectorAll("section.solution")].map(s => [
      s.querySelector("span[id^=solution-]")?.id ?? "",
      [...s.querySelectorAll("p.exercise-link a")].map(a => a.href)]),
    sidebar: [...document.querySelectorAll("nav.bd-docs-nav a.reference")].map(a => a.href),
  };
}"""


@dataclass
class Site:
    """The built site and what the browser saw on each of its pages (keyed by path, e.g. 'chapters/…/ch05.html')."""

    html: Path
    base_url: str
    notebooks: list[str]
    facts: dict[str, dict] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)


def load_notebook(path: str) -> dict:
    """A committed notebook as JSON."""
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def markdown(notebook: dict) -> str:
    """A notebook's markdown cells, joined."""
    return "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")


def stored_plots(notebook: dict) -> int:
    """How many PNG images the notebook's stored outputs hold."""
    return sum("image/png" in output.get("data", {})
               for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", []))


def page_of(notebook: str) -> str:
    """The site path of a notebook's page."""
    return notebook.removesuffix(".ipynb") + ".html"


def build_site(out: Path) -> tuple[Path, list[str]]:
    """Build the site into `out` with tools/build_book.py; return the html folder and the notebooks in site order."""
    for module, package in (("jupyter_book", "jupyter-book"), ("mathjax", "django-static-mathjax")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} is not installed: {WEB_INSTALL}")
    result = subprocess.run([sys.executable, "tools/build_book.py", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the site's build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert not warnings, "Sphinx warned (a broken reference, a missing file...):\n" + "\n".join(warnings)
    toc = (out / "src" / "_toc.yml").read_text(encoding="utf-8")
    notebooks = [line.split("file: ", 1)[1] + ".ipynb" for line in toc.splitlines() if "file: " in line]
    return out / "html", notebooks


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    with chromium_or_skip() as browser:
        yield browser


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site, built once, served from 127.0.0.1, every page visited once in one browser tab."""
    html, notebooks = build_site(tmp_path_factory.mktemp("book"))
    with serve_directory(html) as base_url:
        site = Site(html, base_url, notebooks)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
        problems = watch_page(page, base_url)
        # Every page, not the theme's template fragments in _static/ nor the downloads.
        paths = sorted(str(p.relative_to(html)) for p in html.rglob("*.html"))
        for path in [path for path in paths if not path.startswith("_")]:
            problems.clear()
            page.goto(base_url + path, wait_until="load")
            site.facts[path] = page.evaluate(PAGE_FACTS)
            site.problems[path] = problems.all()
        take_screenshot(page, base_url)
        page.close()
        yield site


def take_screenshot(page: Page, base_url: str) -> None:
    """Chapter 5 at its loss plot, for the README and as a CI artifact."""
    page.goto(base_url + "chapters/ch05_pretraining/ch05.html", wait_until="load")
    plot = page.locator("div.cell", has_text="plot_losses(").locator(".cell_output img").first
    plot.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -250)")  # the code that draws it, above the plot
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_every_page_loads_cleanly_and_stays_on_the_site(site):
    assert len(site.facts) >= len(site.notebooks) + 1  # the notebooks, the landing page, search and index pages
    bad = {path: problems for path, problems in site.problems.items() if problems}
    assert not bad, bad


def test_every_internal_link_reaches_a_page_and_anchor(site):
    broken = []
    for path, facts in site.facts.items():
        for link in facts["links"]:
            url = urlsplit(link)
            if not link.startswith(site.base_url):
                continue
            target = unquote(url.path.removeprefix(urlsplit(site.base_url).path)) or "index.html"
            if not (site.html / target).is_file():
                broken.append(f"{path}: {link} (no such file)")
            elif url.fragment and target.endswith(".html"):
                if target not in site.facts:
                    broken.append(f"{path}: {link} (a page outside the site's pages)")
                elif unquote(url.fragment) not in site.facts[target]["ids"]:
                    broken.append(f"{path}: {link} (no element with that id)")
    assert not broken, "\n".join(broken)


def test_every_image_loads(site):
    images = [(path, src, width) for path, facts in site.facts.items() for src, width in facts["images"]]
    assert images
    broken = [f"{path}: {src}" for path, src, width in images if width == 0]
    assert not broken, "images that did not load:\n" + "\n".join(broken)


def test_each_notebook_page_shows_its_title_and_its_stored_plots(site):
    with_plots = 0
    for notebook in site.notebooks:
        stored = load_notebook(notebook)
        facts = site.facts[page_of(notebook)]
        title = re.search(r"^# (.+)$", markdown(stored), re.M).group(1).strip()
        assert facts["title"] == re.sub(r"[`*]", "", title), notebook
        # A chapter without plots has none stored: the count on the page equals the stored count, zero included.
        assert facts["plots"] == stored_plots(stored), notebook
        with_plots += facts["plots"] > 0
    assert with_plots >= 15  # every chapter but appendices A and E draws something


def test_the_landing_page_is_the_chapter_map_and_the_sidebar_follows_it(site):
    index = site.facts["index.html"]
    links = [link.removeprefix(site.base_url) for link in index["links"]]
    for notebook in site.notebooks:
        assert page_of(notebook) in links, f"the landing page does not link {notebook}"
    sidebar = [link.removeprefix(site.base_url).split("#")[0] for link in index["sidebar"]]
    assert sidebar == ["index.html", *map(page_of, site.notebooks)]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    chapter_map = readme.split("## Chapter map", 1)[1].split("\n## ", 1)[0]
    in_readme = re.findall(r"\]\(((?:chapters|solutions)/[^)]+\.ipynb)\)", chapter_map)
    assert [n for n in site.notebooks if n.startswith("chapters/")] == list(dict.fromkeys(
        n for n in in_readme if n.startswith("chapters/")))
    assert index["title"] == re.search(r"^# (.+)$", readme, re.M).group(1)


def test_math_is_typeset_offline_by_the_bundled_mathjax(site):
    with_math = {path: facts for path, facts in site.facts.items() if facts["math"]}
    assert "chapters/appE_lora/appE.html" in with_math  # LoRA's update, written in TeX
    for path, facts in with_math.items():
        assert facts["typeset"] == facts["math"] and facts["math_errors"] == 0, path
    scripts = (site.html / "chapters/appE_lora/appE.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-mml-chtml.js" in scripts and "cdn.jsdelivr" not in scripts


def test_exercises_are_marked_and_linked_to_their_solutions_and_back(site):
    counted = 0
    for notebook in site.notebooks:
        numbers = (SOLUTION_EXERCISE if notebook.startswith("solutions/") else CHAPTER_EXERCISE).findall(
            markdown(load_notebook(notebook)))
        facts = site.facts[page_of(notebook)]
        if notebook.startswith("solutions/"):
            marked, own, other = facts["solutions"], "solution", "exercise"
        else:
            marked, own, other = facts["exercises"], "exercise", "solution"
        assert [label for label, _ in marked] == [f"{own}-{n.lower().replace('.', '-')}" for n in numbers], notebook
        assert not facts[f"{other}s"], f"{notebook}: {other} sections on a page of {own}s"
        for label, links in marked:
            counterpart = label.replace(own, other, 1)
            assert any(link.endswith(f"#{counterpart}") for link in links), f"{notebook}: {label} has no link"
        counted += len(numbers)
    assert counted >= 2 * 45  # 48 exercises when this was written, each with its solution


def test_screenshot_of_chapter_5_is_saved(site):
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 20_000
