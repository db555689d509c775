"""The package's layers: library modules never import a command (ARCHITECTURE.md, "What may import what").

A command is a module with an `if __name__ == "__main__":` block (`python -m shared.train`, the chat
command, data-generation scripts). Library code that imported one would drag a command's argument
parsing and side effects into every notebook, and would make commands impossible to change freely.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def is_command(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
COMMANDS = sorted(name for name, path in MODULES.items() if is_command(path))
LIBRARY = sorted(set(MODULES) - set(COMMANDS))

# One fresh interpreter imports every library module and lists the commands that got loaded.
PROBE = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # shared.data is a deprecated alias: importing it is allowed
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)))
"""


def test_the_commands_are_the_ones_we_know():
    assert {"shared.train", "shared.chat"} <= set(COMMANDS), COMMANDS
    assert {"shared.trainer", "shared.pretrained", "shared.checks", "shared.tokenization"} <= set(LIBRARY)


def test_no_library_module_loads_a_command_module():
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(COMMANDS), *LIBRARY], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the library loaded the command module(s) {loaded}: move what the library " \
                         "needs from them into a library module (ARCHITECTURE.md)"


def test_the_probe_would_see_a_command_that_got_loaded():
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["shared.chat"]), "shared.chat"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["shared.chat"]


@pytest.mark.parametrize("name", LIBRARY)
def test_no_library_module_names_a_command_in_its_imports(name):
    """The static side of the same rule, per module, so the failure names the culprit directly."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    assert not imported & set(COMMANDS), f"{name} imports the command(s) {sorted(imported & set(COMMANDS))}"


# ARCHITECTURE.md's table: a module may import from its own layer or an earlier one.
LAYERS = [
    ["files", "devices", "interrupts", "run_folder"],
    ["tokenization", "modern_tokenizers", "corpus", "dataloader", "token_file", "text_cleaning", "dedup", "toy_crawl",
     "multiple_choice", "data"],
    ["attention", "transformer", "fast_linear", "static_decode", "lora", "weights", "modern_blocks", "llama3", "qwen3",
     "architectures"],
    ["pretraining", "optimizers", "checkpoint", "distributed", "memory", "evaluation", "scaling", "trainer"],
    ["pretrained", "classification", "instruction", "preference", "rl"],
    ["checks"],
    ["train", "chat", "chat_web", "generate", "instruction_data", "preference_data", "device_check"],
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def layer(module: str) -> int:
    top = module.split(".")[1]  # shared.checks.ch05 -> checks
    assert top in LAYER_OF, f"{module} is in no layer: add it to ARCHITECTURE.md's table and to LAYERS here"
    return LAYER_OF[top]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_only_to_the_same_or_an_earlier_layer(name):
    if name == "shared":
        return
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name.startswith("shared."))
        elif isinstance(node, ast.ImportFrom) and node.module == "shared":
            targets.update(f"shared.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared."):
            targets.add(node.module)
    later = sorted(t for t in targets if layer(t) > layer(name))
    assert not later, f"{name} (layer {layer(name)}) imports {later} from a later layer (ARCHITECTURE.md)"
