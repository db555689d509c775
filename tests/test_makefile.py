"""The README's first command: `make lab` must start Jupyter for root and non-root readers alike."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def lab_command(*args: str) -> str:
    """The jupyter command line `make lab` would run (a dry run: nothing starts, nothing installs)."""
    result = subprocess.run(["make", "-n", "lab", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return next(line for line in result.stdout.splitlines() if "jupyter lab" in line)


def test_lab_passes_allow_root_exactly_when_run_as_root():
    command = lab_command()
    assert ("--allow-root" in command) == (os.geteuid() == 0), command
    assert "--ServerApp.root_dir=." in command  # the whole project: chapters and solutions


def test_lab_opens_the_named_notebook():
    assert lab_command("NB=chapters/ch04_gpt_model/ch04.ipynb").endswith("chapters/ch04_gpt_model/ch04.ipynb")


def test_lab_refuses_a_notebook_that_does_not_exist_with_a_clear_message(tmp_path):
    # Run the recipe's check alone, with `install` already satisfied by an empty marker in a temp venv.
    (tmp_path / ".installed").touch()
    os.utime(tmp_path / ".installed", (2**31, 2**31))  # newer than requirements.txt and pyproject.toml
    result = subprocess.run(["make", "lab", "NB=chapters/no_such.ipynb", f"VENV={tmp_path}"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "NB=chapters/no_such.ipynb does not exist" in result.stdout


def test_device_check_runs_the_command_with_its_arguments():
    # --no-print-directory: under `make test` the outer make's flags add "Entering directory" lines.
    result = subprocess.run(["make", "--no-print-directory", "-n", "device-check", "ARGS=--device cpu"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    commands = [line for line in result.stdout.splitlines() if "shared.device_check" in line]
    assert len(commands) == 1 and commands[0].endswith("python -m shared.device_check --device cpu"), result.stdout
