"""tools/sync_notebooks.py (`make sync`): copies shared/'s definitions into the marked notebook cells."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tools/, which is not part of the installed package

from tools.sync_notebooks import definitions, dump_notebook, main, sync_notebook  # noqa: E402

MODULE = '''"""A module of finished components."""

import math


def area(radius):
    """The area of a circle."""
    return math.pi * radius**2


class Circle:
    def __init__(self, radius):
        self.radius = radius
'''

STALE_CELL = '''# The finished version, kept in shared/shapes.py (a test keeps the two identical).
import math  # the notebook's own import line


def area(radius):
    return 3 * radius * radius  # an old version


class Circle:
    def __init__(self, radius):
        self.radius = radius


print(area(2))'''

SYNCED_CELL = '''# The finished version, kept in shared/shapes.py (a test keeps the two identical).
import math  # the notebook's own import line


def area(radius):
    """The area of a circle."""
    return math.pi * radius**2


class Circle:
    def __init__(self, radius):
        self.radius = radius


print(area(2))'''

OUTPUTS = [{"name": "stdout", "output_type": "stream", "text": ["12\n"]}]


def cell(cell_type, source, **fields):
    return {"cell_type": cell_type, "id": f"{cell_type}{len(source)}", "metadata": {},
            "source": source.splitlines(keepends=True), **fields}


def write_project(tmp_path, marked_cell=STALE_CELL):
    """A shared/ folder with one module and a notebook whose marked cell shows it."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "shapes.py").write_text(MODULE, encoding="utf-8")
    notebook = {
        "cells": [
            cell("markdown", "# Shapes — the area of a circle\n\nSee `shared/shapes.py`."),
            cell("code", "import torch", execution_count=1, outputs=[]),
            cell("code", marked_cell, execution_count=2, outputs=OUTPUTS),
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "shapes.ipynb"
    path.write_text(dump_notebook(notebook), encoding="utf-8")
    return path


def test_dump_notebook_writes_the_repositorys_format():
    path = ROOT / "chapters" / "ch04_gpt_model" / "ch04.ipynb"
    text = path.read_text(encoding="utf-8")
    assert dump_notebook(json.loads(text)) == text


def test_definitions_keep_decorators_and_comments():
    source = "import x\n\n\n@decorator\ndef f():\n    # a comment\n    return 1\n\n\nclass C:\n    pass\n\n\nf()"
    assert definitions(source) == {"f": "@decorator\ndef f():\n    # a comment\n    return 1",
                                   "C": "class C:\n    pass"}


def test_sync_copies_the_modules_definitions_and_keeps_everything_else(tmp_path, capsys):
    path = write_project(tmp_path)
    before = json.loads(path.read_text(encoding="utf-8"))

    assert main(["--shared", str(tmp_path / "shared"), str(path)]) == 0
    assert "cell1: area (shared/shapes.py)" in capsys.readouterr().out

    text = path.read_text(encoding="utf-8")
    after = json.loads(text)
    marked = after["cells"][2]
    assert "".join(marked["source"]) == SYNCED_CELL  # only `area` changed: the import, the comment, print() stay
    assert marked["source"] == SYNCED_CELL.splitlines(keepends=True)  # a list of lines, as nbformat stores it
    assert marked["outputs"] == OUTPUTS and marked["execution_count"] == 2
    assert after["cells"][:2] == before["cells"][:2] and after["metadata"] == before["metadata"]
    assert text == dump_notebook(after)  # indent 1, sorted keys, "—" kept as is, a final newline

    assert main(["--shared", str(tmp_path / "shared"), str(path)]) == 0  # nothing left to do
    assert path.read_text(encoding="utf-8") == text


def test_check_reports_without_writing(tmp_path, capsys):
    path = write_project(tmp_path)
    text = path.read_text(encoding="utf-8")

    assert main(["--check", "--shared", str(tmp_path / "shared"), str(path)]) == 1
    out = capsys.readouterr().out
    assert "differs: " in out and "shapes.ipynb:cell1: area (shared/shapes.py)" in out and "make sync" in out
    assert path.read_text(encoding="utf-8") == text

    changes = sync_notebook(path, tmp_path / "shared", check=True)
    assert [(c.index, c.module, c.names) for c in changes] == [(1, "shapes", ["area"])]
    assert path.read_text(encoding="utf-8") == text


def test_a_definition_missing_from_the_module_is_an_error(tmp_path, capsys):
    path = write_project(tmp_path, STALE_CELL + "\n\n\ndef perimeter(radius):\n    return 6 * radius")
    text = path.read_text(encoding="utf-8")

    assert main(["--shared", str(tmp_path / "shared"), str(path)]) == 1
    error = capsys.readouterr().err
    assert "shapes.ipynb:cell1" in error and "perimeter" in error and "shared/shapes.py" in error
    assert path.read_text(encoding="utf-8") == text  # nothing written, not even the stale `area`
