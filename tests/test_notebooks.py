"""Keep the notebooks honest: stored executed top to bottom, and identical to `shared/` where they say so.

nbval (`pytest --nbval chapters solutions`) re-runs every notebook and compares outputs; these
tests add what nbval cannot see.
"""

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tools/, which is not part of the installed package

# The cell mark, the notebook list and the parsing of definitions are the sync tool's (`make sync`),
# so the tool copies exactly what this test compares. A marked cell starts with a comment naming its
# module, e.g. "# The finished version, kept in shared/tokenization.py (a test keeps the two identical)".
from tools.sync_notebooks import SYNC_MARK, definitions, notebook_paths  # noqa: E402

NOTEBOOKS = notebook_paths(ROOT)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_are_notebooks():
    assert any(p.parts[-3] == "chapters" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_stored_executed_top_to_bottom_without_errors(path):
    notebook = load(path)
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"execution counts {counts}: re-run the notebook top to bottom"
    for cell in cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error" or "NBVAL_RAISES_EXCEPTION" in "".join(cell["source"]), (
                f"stored error {output.get('ename')}: {output.get('evalue')}"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_uses_the_standard_python3_kernel(path):
    assert load(path)["metadata"].get("kernelspec", {}).get("name") == "python3"


SYNCED = [
    (path, i, cell)
    for path in NOTEBOOKS
    for i, cell in enumerate(code_cells(load(path)))
    if SYNC_MARK.match(cell)
]


@pytest.mark.parametrize("path, index, cell", SYNCED, ids=[f"{p.relative_to(ROOT)}:cell{i}" for p, i, _ in SYNCED])
def test_notebook_component_is_identical_to_shared(path, index, cell):
    module = SYNC_MARK.match(cell).group(1)
    module_defs = definitions((ROOT / "shared" / f"{module}.py").read_text(encoding="utf-8"))
    cell_defs = definitions(cell)
    assert cell_defs, "a cell marked as a shared/ component defines nothing"
    for name, source in cell_defs.items():
        assert name in module_defs, f"{name} is shown in the notebook but missing from shared/{module}.py"
        assert textwrap.dedent(source) == textwrap.dedent(module_defs[name]), (
            f"{name} in the notebook differs from shared/{module}.py: "
            "run `make sync` to copy the module into the notebook"
        )


def test_some_components_are_synced():
    assert {p.parts[-2] for p, _, _ in SYNCED} >= {"ch02_text_data"}


CHECK_CALL = re.compile(r"\b(check_exercise_\w+)\(")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parts[-3] == "chapters"],
                         ids=ids([p for p in NOTEBOOKS if p.parts[-3] == "chapters"]))
def test_every_exercise_has_a_worked_solution(path):
    checks = set(CHECK_CALL.findall("\n".join(code_cells(load(path)))))
    if not checks:
        return
    chapter = path.parent.name.split("_")[0]
    solutions = ROOT / "solutions" / f"{chapter}_solutions.ipynb"
    assert solutions.exists(), f"{path.name} has exercises but {solutions.name} does not exist"
    solved = load(solutions)
    outputs = "".join(
        "".join(o.get("text", "")) for c in solved["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    )
    for check in sorted(checks):
        exercise = check.removeprefix("check_exercise_").replace("_", ".")
        assert f"Exercise {exercise}: correct!" in outputs, f"{solutions.name} does not solve exercise {exercise}"


MAX_CELL_LINES = 60


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_code_cells_are_short_enough_to_follow(path):
    long_cells = [(i, n) for i, source in enumerate(code_cells(load(path)))
                  if (n := len(source.splitlines())) > MAX_CELL_LINES]
    assert not long_cells, (
        f"code cells (index among code cells, lines) over {MAX_CELL_LINES} lines: {long_cells}; "
        "split them the way the book builds the code up"
    )


NBVAL_MARKERS = {"NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT", "NBVAL_RAISES_EXCEPTION", "NBVAL_SKIP"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_nbval_markers_are_spelled_as_nbval_reads_them(path):
    """nbval honours a marker only when the comment is the marker alone: `# NBVAL_IGNORE_OUTPUT (why)` is ignored."""
    bad = [(i, line) for i, source in enumerate(code_cells(load(path))) for line in source.splitlines()
           if "NBVAL_" in line and line.lstrip("# ").strip() not in NBVAL_MARKERS]
    assert not bad, f"comments nbval will not read as markers (put the reason on the next line): {bad}"


EXERCISE_HEADING = re.compile(r"^(#+) Exercise ([A-Z0-9]+\.\d+) — (\S.*)$", re.M)
OTHER_EXERCISE_FORM = re.compile(r"^\s*(\*\*\s*Exercise\b|#+\s*Exercise\b(?! [A-Z0-9]+\.\d+ — \S))", re.M)
# Where the book itself places exercises out of numeric order, the chapter follows the book.
BOOK_ORDER = {"ch07": ["7.2", "7.1", "7.3", "7.4"]}


def exercise_headings(path: Path) -> list[tuple[str, str, str]]:
    """(heading level, number, title) of each exercise heading in the notebook's markdown cells."""
    notebook = load(path)
    text = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    return EXERCISE_HEADING.findall(text)


def number_key(number: str) -> tuple[str, int]:
    chapter, n = number.split(".")
    return chapter, int(n)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_exercises_have_one_heading_format_in_order(path):
    notebook = load(path)
    markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    other = OTHER_EXERCISE_FORM.findall(markdown)
    assert not other, "write each exercise as a heading '### Exercise N.M — Title' (solutions: '## ...')"
    headings = exercise_headings(path)
    level = "##" if path.parts[-2] == "solutions" else "###"
    assert all(h == level for h, _, _ in headings), f"exercise headings in this notebook use {level}"
    numbers = [number for _, number, _ in headings]
    chapter = path.name.split("_")[0].removesuffix(".ipynb")
    expected = sorted(numbers, key=number_key)
    if path.parts[-2] != "solutions" and chapter in BOOK_ORDER:
        expected = BOOK_ORDER[chapter]
    assert numbers == expected, f"exercises appear as {numbers}, expected {expected}"


CHAPTERS_WITH_EXERCISES = [p for p in NOTEBOOKS if p.parts[-3] == "chapters" and exercise_headings(p)]


@pytest.mark.parametrize("path", CHAPTERS_WITH_EXERCISES, ids=ids(CHAPTERS_WITH_EXERCISES))
def test_solutions_have_the_same_exercises_and_titles(path):
    chapter = path.parent.name.split("_")[0]
    solutions = ROOT / "solutions" / f"{chapter}_solutions.ipynb"
    in_chapter = sorted(((n, t.strip()) for _, n, t in exercise_headings(path)), key=lambda e: number_key(e[0]))
    in_solutions = [(n, t.strip()) for _, n, t in exercise_headings(solutions)]
    assert in_chapter == in_solutions
    checks = set(CHECK_CALL.findall("\n".join(code_cells(load(path)))))
    numbers = {n for n, _ in in_chapter}
    for check in checks:
        number = check.removeprefix("check_exercise_").replace("_", ".", 1)
        assert number in numbers, f"{check} is called but no 'Exercise {number}' heading introduces it"
