"""Build the curriculum as a static website (`make book`): every chapter and solution notebook, from its stored outputs.

    python tools/build_book.py                # writes _build/html/index.html
    python tools/build_book.py --out /tmp/b   # the same into another folder (the test builds into a temporary one)

Nothing is executed and nothing is downloaded. The script lays out a staging folder (`<out>/src`) with
Jupyter Book's `_config.yml` and `_toc.yml`, a landing page made from the README's title, introduction and
chapter map, copies of the notebooks (the committed ones are never touched) in the chapter map's order, and
MathJax from the `django-static-mathjax` package (requirements-web.txt), so that math renders offline. In
the copies each exercise heading (`### Exercise N.M — Title`) gets a label and a link to its worked solution
(`## Exercise N.M — Title` in solutions/), and each solution a link back; tools/book/ holds the Sphinx
extension and the style sheet that mark both.
Then Sphinx builds `<out>/html` (its caches: `<out>/.doctrees`, `<out>/jupyter_execute`). A staged file is
rewritten only when its content changed, so a second build re-reads only the notebooks that changed; a
changed style or configuration rewrites every page.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "_build"
# The site's own static files. Not `_static`: Jupyter Book would add a <script> tag for every .js file under
# that folder, MathJax's lazily loaded parts included.
STATIC = "book_static"
# The site's own files, kept in tools/book/, and where the staging folder takes them.
SITE_FILES = ROOT / "tools" / "book"
SITE_COPIES = {"book_exercises.py": "book_exercises.py", "favicon.svg": "favicon.svg", "book.css": f"{STATIC}/book.css"}
INSTALL_HINT = "run `make web-install` (pip install -r requirements-web.txt into .venv), or `make book`"

# A notebook link in the README's chapter map: [`chapters/ch05_pretraining/ch05.ipynb`](chapters/...ipynb).
NOTEBOOK_LINK = re.compile(r"\]\(((?:chapters|solutions)/[^)\s]+\.ipynb)\)")
MARKDOWN_LINK = re.compile(r"(\[[^\]]*\])\(([^)\s]+)\)")
# The heading forms tests/test_notebooks.py enforces: ### in chapters, ## in solutions.
CHAPTER_EXERCISE = re.compile(r"^### Exercise ([A-Z0-9]+\.\d+) — (\S.*)$", re.M)
SOLUTION_EXERCISE = re.compile(r"^## Exercise ([A-Z0-9]+\.\d+) — (\S.*)$", re.M)
FIRST_HEADING = re.compile(r"^# (\S.*)$", re.M)

@dataclass
class Page:
    """One notebook of the site: its path in the repository and the title of its first heading."""

    path: str
    title: str


def readme_parts(readme: str) -> tuple[str, str, str]:
    """The README's title, its introduction (before the first `##`) and its "## Chapter map" section."""
    title_match = FIRST_HEADING.search(readme)
    if not title_match:
        raise SystemExit("README.md has no '# ' title")
    sections = re.split(r"^(?=## )", readme, flags=re.M)
    introduction = sections[0][title_match.end():].strip()
    chapter_map = next((s for s in sections if s.startswith("## Chapter map")), None)
    if chapter_map is None:
        raise SystemExit("README.md has no '## Chapter map' section: the landing page is made from it")
    return title_match.group(1).strip(), introduction, chapter_map.strip()


def notebook_order(chapter_map: str) -> tuple[list[str], list[str]]:
    """The chapter and solution notebooks in the order the chapter map names them."""
    chapters: list[str] = []
    solutions: list[str] = []
    for path in NOTEBOOK_LINK.findall(chapter_map):
        target = chapters if path.startswith("chapters/") else solutions
        if path not in target:
            target.append(path)
    return chapters, solutions


def landing_page(title: str, introduction: str, chapter_map: str) -> str:
    """The site's index page: the README's title and introduction, then its chapter map with linked chapter names."""
    heading, _, body = chapter_map.partition("\n")
    rows = []
    for line in body.strip().splitlines():
        first, bar, rest = line.partition(" | ")
        notebook = NOTEBOOK_LINK.search(rest) if first.startswith("| ") else None
        rows.append(f"| [{first[2:]}]({notebook.group(1)}){bar}{rest}" if notebook else line)
    table, _, after = "\n".join(rows).partition("\n\n")
    return (f"---\nhtml_theme.sidebar_secondary.remove: true\n---\n\n# {title}\n\n{introduction}\n\n"
            f"{heading}\n\n:::{{container}} chapter-map\n{table}\n:::\n\n{after}\n")


def load_notebook(path: Path) -> dict:
    """A notebook as JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def markdown_text(notebook: dict) -> str:
    """All markdown cells of a notebook, one after the other."""
    return "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")


def notebook_title(notebook: dict, path: str) -> str:
    """The text of the notebook's first `# ` heading."""
    match = FIRST_HEADING.search(markdown_text(notebook))
    if not match:
        raise SystemExit(f"{path} has no '# ' heading to title its page")
    return match.group(1).strip()


def label(kind: str, number: str) -> str:
    """The cross-reference label of an exercise (kind 'exercise') or of its solution (kind 'solution')."""
    return f"{kind}-{number.lower().replace('.', '-')}"


def mark_exercises(source: str, solved: dict[str, str], chapter_titles: dict[str, str], in_solutions: bool) -> str:
    """A markdown cell's source with each exercise heading labelled and linked to its counterpart."""
    pattern = SOLUTION_EXERCISE if in_solutions else CHAPTER_EXERCISE

    def replace(match: re.Match) -> str:
        number = match.group(1)
        if in_solutions:
            chapter = chapter_titles.get(number)
            link = f"Back to the exercise in {{ref}}`{chapter} <{label('exercise', number)}>`" if chapter else ""
            own = label("solution", number)
        else:
            link = (f"Worked solution: {{ref}}`{solved[number]} <{label('solution', number)}>`"
                    if number in solved else "")
            own = label("exercise", number)
        extra = f"\n\n{{.exercise-link}}\n{link}" if link else ""
        return f"({own})=\n{match.group(0)}{extra}"

    return pattern.sub(replace, source)


def rewrite_links(source: str, source_dir: Path, copies: set[Path]) -> str:
    """Keep links to notebooks and web pages; a link to another file of the project becomes a download of a copy.

    A link to a folder or to a missing file would be broken on the site: it becomes plain text.
    """

    def replace(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#") or target.endswith(".ipynb"):
            return match.group(0)
        path = (source_dir / target.split("#")[0]).resolve()
        if not path.is_file() or ROOT not in path.parents:
            return text[1:-1]
        copies.add(path.relative_to(ROOT))
        inner = text[1:-1].strip("`")
        return f"{{download}}`{inner} <{target}>`"

    return MARKDOWN_LINK.sub(replace, source)


def write_if_changed(path: Path, content: str) -> bool:
    """Write a text file unless it already holds exactly this content (so Sphinx keeps what it read before).

    Returns whether it wrote.
    """
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return True


def mathjax_folder() -> Path:
    """MathJax 3's browser bundle from the django-static-mathjax package (no network needed)."""
    spec = importlib.util.find_spec("mathjax")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5" if spec else None
    if folder is None or not (folder / "tex-mml-chtml.js").is_file():
        raise SystemExit(f"MathJax is not installed (django-static-mathjax): {INSTALL_HINT}")
    return folder


def stage_mathjax(static: Path) -> None:
    """Copy MathJax's TeX-to-HTML bundle, its fonts and its lazily loaded parts beside the site's static files."""
    source, target = mathjax_folder(), static / "mathjax"
    if (target / "tex-mml-chtml.js").is_file():
        return
    keep = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "sre", "adaptors")
    for name in keep:
        item = source / name
        if item.is_dir():
            shutil.copytree(item, target / name, ignore=shutil.ignore_patterns("svg"), dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target / name)
    license_file = source.parent / "LICENSE"
    if license_file.is_file():
        shutil.copy2(license_file, target / "LICENSE")


def config_yaml(title: str) -> str:
    """Jupyter Book's _config.yml: nothing executed, math from the local MathJax, no buttons that need a host.

    The extension list is Jupyter Book's less what this site does not use (Thebe's live code, intersphinx,
    the LaTeX helpers): Thebe's script, loaded twice, raised an error on every page.
    """
    return f"""\
title: {json.dumps(title, ensure_ascii=False)}
author: ""
copyright: ""
only_build_toc_files: true
exclude_patterns: [_build, "**.ipynb_checkpoints"]
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [colon_fence, dollarmath, attrs_block]
html:
  favicon: favicon.svg
  use_multitoc_numbering: false
  home_page_in_navbar: true
  use_repository_button: false
  use_issues_button: false
  use_edit_page_button: false
latex:
  use_jupyterbook_latex: false
launch_buttons:
  thebe: false
repository:
  url: ""
sphinx:
  recursive_update: true
  local_extensions:
    book_exercises: .
  config:
    extensions: [sphinx_togglebutton, sphinx_copybutton, myst_nb, jupyter_book, sphinx_comments, sphinx_external_toc,
                 sphinx_design, sphinx_book_theme, book_exercises]
    html_theme_options:
      use_download_button: false  # it offers the page's source, which the site does not copy
    html_context:
      default_mode: auto
    mathjax_path: mathjax/tex-mml-chtml.js
    html_static_path: [{STATIC}]
    html_css_files: [book.css]
    html_copy_source: false
    html_show_sourcelink: false
    nb_merge_streams: true
    # The notebooks skip heading levels in places; raised errors shown on purpose have backticks that
    # the traceback lexer trips over (it then colours them in relaxed mode).
    suppress_warnings: [myst.header, misc.highlighting_failure]
"""


def toc_yaml(chapters: list[str], solutions: list[str]) -> str:
    """Jupyter Book's _toc.yml: the landing page, then the chapters and the solutions in the chapter map's order."""
    lines = ["format: jb-book", "root: index", "parts:"]
    for caption, paths in (("Chapters", chapters), ("Solutions", solutions)):
        lines += [f"  - caption: {caption}", "    chapters:"]
        lines += [f"      - file: {path.removesuffix('.ipynb')}" for path in paths]
    return "\n".join(lines) + "\n"


def stage(out: Path) -> tuple[Path, list[Page], str]:
    """Lay out the staging folder `<out>/src`.

    Returns it, the site's notebook pages in order, and a hash of the files that every page depends on
    (configuration, table of contents, extension, style).
    """
    src = out / "src"
    title, introduction, chapter_map = readme_parts((ROOT / "README.md").read_text(encoding="utf-8"))
    chapters, solutions = notebook_order(chapter_map)
    on_disk = {str(p.relative_to(ROOT)) for p in (*ROOT.glob("chapters/*/*.ipynb"), *ROOT.glob("solutions/*.ipynb"))}
    missing = sorted(on_disk - set(chapters) - set(solutions))
    if missing:
        raise SystemExit(f"README.md's chapter map does not link {', '.join(missing)}: add a row for each")
    notebooks = {path: load_notebook(ROOT / path) for path in chapters + solutions}
    solved: dict[str, str] = {}
    chapter_titles: dict[str, str] = {}
    for path in solutions:
        for number, _ in SOLUTION_EXERCISE.findall(markdown_text(notebooks[path])):
            solved[number] = f"{notebook_title(notebooks[path], path)}, exercise {number}"
    for path in chapters:
        for number, _ in CHAPTER_EXERCISE.findall(markdown_text(notebooks[path])):
            chapter_titles[number] = notebook_title(notebooks[path], path)

    copies: set[Path] = set()
    pages = []
    for path, notebook in notebooks.items():
        in_solutions = path.startswith("solutions/")
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                source = mark_exercises("".join(cell["source"]), solved, chapter_titles, in_solutions)
                cell["source"] = rewrite_links(source, (ROOT / path).parent, copies)
        write_if_changed(src / path, json.dumps(notebook, ensure_ascii=False, indent=1) + "\n")
        pages.append(Page(path, notebook_title(notebook, path)))

    index = landing_page(title, introduction, chapter_map)
    write_if_changed(src / "index.md", rewrite_links(index, ROOT, copies))
    for copy in sorted(copies):
        if not (src / copy).is_file() or (src / copy).read_bytes() != (ROOT / copy).read_bytes():
            (src / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / copy, src / copy)
    site_files = {"_config.yml": config_yaml(title.split(" — ")[0]), "_toc.yml": toc_yaml(chapters, solutions)}
    site_files.update({target: (SITE_FILES / name).read_text(encoding="utf-8") for name, target in SITE_COPIES.items()})
    for name, content in site_files.items():
        write_if_changed(src / name, content)
    stage_mathjax(src / STATIC)
    site_hash = hashlib.sha256(json.dumps(site_files, sort_keys=True).encode()).hexdigest()
    return src, pages, site_hash


def build(out: Path = DEFAULT_OUT, jobs: int = 1, quiet: bool = True) -> list[Page]:
    """Stage and build the site into `<out>/html`; return its notebook pages, in order. Raises on a failed build."""
    try:
        from jupyter_book.sphinx import build_sphinx
    except ImportError as error:
        raise SystemExit(f"Jupyter Book is not installed: {INSTALL_HINT}") from error
    src, pages, site_hash = stage(out)
    # Sphinx re-reads changed pages by itself, but a changed style sheet or configuration alone would not
    # reach the pages already written: then every page is written again.
    stamp = out / "html" / ".site-files.sha256"
    site_changed = not stamp.is_file() or stamp.read_text() != site_hash
    overrides = {"external_toc_path": (src / "_toc.yml").as_posix(), "latex_individualpages": False}
    result = build_sphinx(src, out / "html", noconfig=True, path_config=src / "_config.yml", confoverrides=overrides,
                          doctreedir=out / ".doctrees", jobs=jobs, quiet=quiet, force_all=site_changed)
    if result != 0:
        raise SystemExit(f"the site's build failed: {result}")
    stamp.write_text(site_hash)
    return pages


def main(argv: list[str] | None = None) -> int:
    """Command line: build the site and say where it is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: _build)")
    # Sphinx reads the pages serially anyway (the table of contents extension says it must), and writing them
    # in two processes measured no faster.
    parser.add_argument("--jobs", type=int, default=1, help="Sphinx processes (default: 1)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress, not only its warnings")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pages = build(args.out.resolve(), jobs=args.jobs, quiet=not args.verbose)
    index = args.out / "html" / "index.html"
    print(f"built {len(pages)} notebook pages in {time.perf_counter() - start:.1f} s; open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
