"""Copy the finished components of `shared/` into the notebook cells that show them (`make sync`).

A code cell that shows a finished component starts with a comment naming its module, e.g.
"# The finished version, kept in shared/tokenization.py (a test keeps the two identical)".
`tests/test_notebooks.py` checks that each top-level function and class defined in such a cell is
line for line the module's; this script makes it so. It replaces each top-level definition in a
marked cell with the module's current one, keeps every other line of the cell (imports, comments,
statements), leaves outputs and execution counts alone, and rewrites a notebook only if a cell
changed, in the format nbformat writes.

    python tools/sync_notebooks.py                  # update every notebook, one line per updated cell
    python tools/sync_notebooks.py --check          # change nothing; list what differs, exit 1 if anything does
    python tools/sync_notebooks.py chapters/ch04_gpt_model/ch04.ipynb   # only these notebooks

A definition in a cell that its module lacks is an error naming the notebook, cell and name (exit 1);
that notebook is left as it was, the others are still synced.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_GLOBS = ("chapters/*/*.ipynb", "solutions/*.ipynb")
# The comment that starts a cell showing a finished component; group 1 is the module's name.
SYNC_MARK = re.compile(r"^#.*\bshared/(\w+)\.py\b")
DEFINITION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def notebook_paths(root: Path = ROOT) -> list[Path]:
    """The project's notebooks: chapters/*/*.ipynb and solutions/*.ipynb, sorted."""
    return sorted(path for pattern in NOTEBOOK_GLOBS for path in root.glob(pattern))


def definition_spans(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, end line) of each top-level function and class in `source`, in order.

    Lines count from 0 and `end` is exclusive, over `source.split("\\n")`; the first line is the
    first decorator's, or the `def`/`class` line.
    """
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, DEFINITION):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.append((node.name, first - 1, node.end_lineno))
    return spans


def definitions(source: str) -> dict[str, str]:
    """Top-level functions and classes in `source`, by name, as their whole lines (comments too)."""
    lines = source.split("\n")
    return {name: "\n".join(lines[start:end]) for name, start, end in definition_spans(source)}


class SyncError(Exception):
    """A marked cell that cannot be synced: it defines a name its module lacks, or nothing at all."""


@dataclass
class CellChange:
    """One marked cell whose definitions differ from its module's."""

    notebook: Path
    index: int  # among the notebook's code cells, as in the test ids ("ch04.ipynb:cell41")
    module: str
    names: list[str]

    def __str__(self) -> str:
        return f"{_show(self.notebook)}:cell{self.index}: {', '.join(self.names)} (shared/{self.module}.py)"


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def sync_cell(cell_source: str, module_source: str, where: str = "the cell", module: str = "the module"
              ) -> tuple[str, list[str]]:
    """`cell_source` with each top-level definition replaced by the module's, and the names replaced.

    Lines outside the definitions stay as they are; a definition that already matches (after dedent)
    is left untouched; a replaced one keeps the indentation of the cell's first line of it.
    """
    module_defs = definitions(module_source)
    spans = definition_spans(cell_source)
    if not spans:
        raise SyncError(f"{where} is marked as a shared/ component but defines nothing")
    missing = [name for name, _, _ in spans if name not in module_defs]
    if missing:
        raise SyncError(f"{where} defines {', '.join(missing)}, missing from {module}")
    lines = cell_source.split("\n")
    replaced = []
    for name, start, end in reversed(spans):  # from the bottom, so earlier line numbers stay valid
        cell_def = "\n".join(lines[start:end])
        new_def = textwrap.dedent(module_defs[name])
        if textwrap.dedent(cell_def) == new_def:
            continue
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        lines[start:end] = textwrap.indent(new_def, indent).split("\n")
        replaced.insert(0, name)
    return "\n".join(lines), replaced


def code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def dump_notebook(notebook: dict) -> str:
    """The notebook as nbformat writes it: indent 1, sorted keys, UTF-8 characters, a final newline."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def sync_notebook(path: Path, shared_dir: Path = ROOT / "shared", *, check: bool = False) -> list[CellChange]:
    """Bring the marked cells of the notebook at `path` up to date with the modules in `shared_dir`.

    Returns the cells that differ(ed). With `check`, or if any cell raises `SyncError`, writes nothing.
    """
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    changes, errors = [], []
    for index, cell in enumerate(code_cells(notebook)):
        source = "".join(cell["source"])
        mark = SYNC_MARK.match(source)
        if not mark:
            continue
        module = mark.group(1)
        module_path = shared_dir / f"{module}.py"
        where = f"{_show(path)}:cell{index}"
        if not module_path.is_file():
            errors.append(f"{where} names shared/{module}.py, which does not exist")
            continue
        try:
            new_source, names = sync_cell(source, module_path.read_text(encoding="utf-8"), where,
                                          f"shared/{module}.py")
        except SyncError as error:
            errors.append(str(error))
            continue
        except SyntaxError as error:
            errors.append(f"{where} (or shared/{module}.py) is not valid Python: {error}")
            continue
        if names:
            cell["source"] = new_source.splitlines(keepends=True)  # a list of lines, as nbformat stores it
            changes.append(CellChange(path, index, module, names))
    if errors:
        raise SyncError("\n".join(errors))
    if changes and not check:
        new_text = dump_notebook(notebook)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/sync_notebooks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to sync (default: chapters/*/*.ipynb and solutions/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing: list the cells that differ and exit 1 if any does")
    parser.add_argument("--shared", type=Path, default=ROOT / "shared", help="the modules' folder (default: shared/)")
    args = parser.parse_args(argv)

    paths = args.notebooks or notebook_paths()
    changes, errors = [], []
    for path in paths:
        try:
            changes += sync_notebook(path, args.shared, check=args.check)
        except SyncError as error:  # this notebook is left as it was
            errors.append(str(error))
    for change in changes:
        print(f"{'differs' if args.check else 'updated'}: {change}")
    if args.check and changes:
        print(f"{len(changes)} cell(s) differ from shared/: run `make sync` to copy the modules into the notebooks.")
    elif not changes and not errors:
        print(f"{len(paths)} notebook(s): every marked cell matches shared/.")
    if errors:
        print("\n".join(f"error: {error}" for error in errors), file=sys.stderr)
        print("Define these names in the module, or take them out of the cell; "
              "the notebooks with errors were left as they were.", file=sys.stderr)
    return 1 if errors or (args.check and changes) else 0


if __name__ == "__main__":
    sys.exit(main())
