"""uv.lock, pyproject.toml's `dev` group and requirements.txt give the same pinned versions.

The pip, conda and uv set-ups must install one environment. requirements.txt is the reference; pyproject.toml's
`dev` dependency group repeats its lines (uv installs that group by default), and uv.lock is what `uv lock` made of
pyproject.toml. These checks only read the files: no network, no uv needed.
"""

from collections import defaultdict
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 without tomli cannot read TOML")

ROOT = Path(__file__).resolve().parent.parent
ROOT_PACKAGE = "llm-from-scratch-companion"

# The interpreters and platforms a reader may have: each pin is checked in every one its marker admits.
PYTHONS = ["3.10.12", "3.11.0", "3.11.7", "3.12.8", "3.13.1", "3.14.0"]
PLATFORMS = [("linux", "Linux", "x86_64"), ("linux", "Linux", "aarch64"), ("darwin", "Darwin", "arm64"),
             ("win32", "Windows", "AMD64")]


def environment(python: str, platform: tuple[str, str, str]) -> dict[str, str]:
    sys_platform, system, machine = platform
    env = default_environment()
    env.update(python_full_version=python, python_version=".".join(python.split(".")[:2]),
               implementation_version=python, sys_platform=sys_platform, platform_system=system,
               platform_machine=machine, os_name="nt" if sys_platform == "win32" else "posix")
    return env


ENVIRONMENTS = [environment(python, platform) for python in PYTHONS for platform in PLATFORMS]


def requirements_file(name: str) -> list[Requirement]:
    """The requirement lines of a pip requirements file (option lines such as `-r requirements.txt` left out)."""
    lines = (line.split(" #")[0].strip() for line in (ROOT / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]


def requirements_txt() -> list[Requirement]:
    return requirements_file("requirements.txt")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def key(requirement: Requirement) -> tuple:
    """A requirement, comparable across spellings: the marker as the set of test environments it admits
    (uv writes `python_version >= "3.11"` as `python_full_version >= '3.11'`)."""
    admitted = frozenset(i for i, env in enumerate(ENVIRONMENTS)
                         if requirement.marker is None or requirement.marker.evaluate(env))
    return (canonicalize_name(requirement.name), str(requirement.specifier), frozenset(requirement.extras), admitted)


def locked_requirement(entry: dict) -> Requirement:
    """A requirement from uv.lock's record of the root package's metadata."""
    text = entry["name"] + ("[" + ",".join(entry["extra"]) + "]" if entry.get("extra") else "")
    text += entry.get("specifier", "")
    return Requirement(text + ("; " + entry["marker"] if entry.get("marker") else ""))


def group(project: dict, name: str) -> list[str]:
    """A dependency group's requirement strings, `{ include-group = ... }` entries expanded as uv records them."""
    lines = []
    for entry in project["dependency-groups"][name]:
        lines += group(project, entry["include-group"]) if isinstance(entry, dict) else [entry]
    return lines


def exact_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==" and "*" not in specifier.version, f"{requirement} is not an exact pin"
    return specifier.version


# Each pip requirements file and the dependency group that repeats it. requirements-web.txt (`make book`) is
# optional: once it exists, its group must too (`uv sync --group web` then installs it).
GROUPS = {"dev": "requirements.txt", "web": "requirements-web.txt"}


@pytest.mark.parametrize("name", GROUPS)
def test_each_group_repeats_its_requirements_file(name):
    groups = pyproject().get("dependency-groups", {})
    if not (ROOT / GROUPS[name]).exists():
        assert name not in groups, f"pyproject.toml has a {name} group but there is no {GROUPS[name]}"
        pytest.skip(f"no {GROUPS[name]}")
    assert name in groups, f"{GROUPS[name]} exists: repeat its lines in pyproject.toml's {name} group, then `uv lock`"
    own = [Requirement(line) for line in groups[name] if isinstance(line, str)]
    assert sorted(map(str, own)) == sorted(map(str, requirements_file(GROUPS[name]))), (
        f"{GROUPS[name]} and pyproject.toml's {name} group differ: change both, then run `uv lock`")


def test_requirements_txt_pins_every_package_exactly():
    for requirement in requirements_txt():
        exact_version(requirement)
    assert any(str(r) == "torch==2.13.0" for r in requirements_txt())


def test_the_lock_is_current_for_pyproject(lock):
    """uv.lock records the metadata it was resolved from: it must be pyproject.toml's of today."""
    project = pyproject()
    (root,) = [p for p in lock["package"] if p["name"] == ROOT_PACKAGE]
    metadata = root["metadata"]
    assert lock["requires-python"] == project["project"]["requires-python"]
    assert sorted(key(locked_requirement(e)) for e in metadata.get("requires-dist", [])) == sorted(
        key(Requirement(r)) for r in project["project"]["dependencies"]), "pyproject.toml changed: run `uv lock`"
    groups = project.get("dependency-groups", {})
    locked_groups = metadata.get("requires-dev", {})
    assert set(locked_groups) == set(groups), "pyproject.toml's groups changed: run `uv lock`"
    for name in groups:
        assert sorted(key(locked_requirement(e)) for e in locked_groups[name]) == sorted(
            key(Requirement(r)) for r in group(project, name)), f"pyproject.toml's group {name} changed: run `uv lock`"


def test_the_lock_holds_the_pinned_versions(lock):
    """In every environment a pin applies to, each version uv.lock records for that package is the pin."""
    by_name = defaultdict(list)
    for package in lock["package"]:
        by_name[package["name"]].append(package)
    checked = 0
    pinned = [r for name in GROUPS.values() if (ROOT / name).exists() for r in requirements_file(name)]
    for requirement in pinned:
        if len(requirement.specifier) != 1 or next(iter(requirement.specifier)).operator != "==":
            continue  # requirements-web.txt may leave a package loose; requirements.txt may not (test above)
        pin = exact_version(requirement)
        name = canonicalize_name(requirement.name)
        assert by_name[name], f"{name} is not in uv.lock"
        for env in ENVIRONMENTS:
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            versions = {p["version"] for p in by_name[name] if "resolution-markers" not in p
                        or any(Marker(m).evaluate(env) for m in p["resolution-markers"])}
            assert versions == {pin}, (f"uv.lock has {name} {sorted(versions)} for Python "
                                       f"{env['python_full_version']} on {env['sys_platform']}, the requirements "
                                       f"file pins {pin}: run `uv lock`")
            checked += 1
    assert checked >= len(PYTHONS) * len(PLATFORMS) * 10


def test_torch_comes_from_pypi_with_no_local_version(lock):
    """PyPI's torch 2.13.0 (CPU-only on macOS and Windows, a CUDA build on Linux), as pip installs it."""
    (torch,) = [p for p in lock["package"] if p["name"] == "torch"]
    assert torch["version"] == "2.13.0"  # not 2.13.0+cpu: the PyTorch index cannot be locked from here
    assert torch["source"] == {"registry": "https://pypi.org/simple"}
