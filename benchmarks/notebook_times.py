"""Time every notebook top to bottom against the reader's budget, and print a Markdown table.

A reader runs each notebook beside the book, so each must finish quickly on an idle 2-core CPU:
at most 90 s, or 180 s for the chapters that train (5, 6, 7, 13, D, E, and their solutions). This
script executes each notebook in a fresh kernel, as `make notebooks` and nbval do, and reports the
wall time, the budget and the margin. Run it on an idle machine; it prints the load average before
it starts so a reader of the table can tell.

    python benchmarks/notebook_times.py                       # every notebook; exit 1 if one is over budget
    python benchmarks/notebook_times.py chapters/ch04_gpt_model/ch04.ipynb   # only these
    python benchmarks/notebook_times.py --write               # also store the executed outputs (as `make notebooks`)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.sync_notebooks import notebook_paths  # noqa: E402

BUDGET_S = 90
TRAINING_BUDGET_S = 180
# Chapters that train a model get the longer budget, and so do their solutions.
TRAINING_CHAPTERS = ("ch05", "ch06", "ch07", "appD", "appE", "ch13")


def budget_for(path: Path) -> int:
    """The notebook's time budget in seconds: 180 for training chapters and their solutions, else 90."""
    return TRAINING_BUDGET_S if path.name.startswith(TRAINING_CHAPTERS) else BUDGET_S


def run_notebook(path: Path, write: bool = False, timeout_s: int = 900) -> float:
    """Execute `path` top to bottom in a fresh python3 kernel; return the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                            record_timing=False, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        temporary = path.with_name(path.name + ".tmp")
        nbformat.write(notebook, temporary)
        os.replace(temporary, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to time (default: all of them)")
    parser.add_argument("--write", action="store_true", help="store each executed notebook's outputs")
    args = parser.parse_args(argv)
    paths = [path.resolve() for path in args.notebooks] or notebook_paths(ROOT)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}. Give paths such as "
                     f"chapters/ch04_gpt_model/ch04.ipynb, or none for all of them.")

    print(f"load average before the run: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", file=sys.stderr)
    rows, total, over = [], 0.0, 0
    for path in paths:
        name = path.relative_to(ROOT).as_posix()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            seconds = run_notebook(path, write=args.write)
        except CellExecutionError as error:
            print(f"{name} stopped with an error (nothing was stored for it):\n{error}", file=sys.stderr)
            return 2
        budget = budget_for(path)
        total += seconds
        over += seconds > budget
        rows.append(f"| `{name}` | {seconds:.0f} | {budget} | {'yes' if seconds <= budget else '**no**'} |")

    print("| notebook | seconds | budget (s) | within budget |")
    print("|---|---:|---:|---|")
    print("\n".join(rows))
    print(f"| all {len(rows)} notebooks | {total:.0f} | | {len(rows) - over} of {len(rows)} |")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
