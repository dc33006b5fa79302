"""The tooling's versions agree: one package version, ruff pinned once for CI and pre-commit, the CPU set-up's
torch inside the range the package declares."""
import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

import wdsr_fast

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
yaml = pytest.importorskip("yaml")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(requirements: list[str], name: str) -> str:
    (version,) = [r.split("==")[1] for r in requirements if re.match(rf"{name}\s*==", r)]
    return version


def test_one_version_string():
    assert "version" in pyproject()["project"]["dynamic"]
    assert importlib.metadata.version("wdsr-fast") == wdsr_fast.__version__


def test_pre_commit_runs_the_ruff_that_ci_runs():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = [r for r in config["repos"] if r["repo"].endswith("/ruff-pre-commit")]
    assert ruff["rev"] == "v" + pinned(pyproject()["project"]["optional-dependencies"]["test"], "ruff")


def test_cpu_torch_pinned_once_within_the_declared_range():
    specifiers = pytest.importorskip("packaging.specifiers")
    (pin,) = re.findall(r'^CPU_TORCH="torch==([^"]+)"', (ROOT / "dev").read_text(), re.M)
    (declared,) = [r for r in pyproject()["project"]["dependencies"] if r.startswith("torch")]
    assert pin in specifiers.SpecifierSet(declared[len("torch"):])


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_file_imports_another(tmp_path):
    """Shared test code lives in tests/helpers.py and the conftest files, never in a test file."""
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("test_"))
                 for p in (ROOT / "tests").rglob("test_*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    planted = tmp_path / "test_planted.py"
    planted.write_text("import torch\nfrom test_model import randomise\n")
    assert imported_modules(planted) == {"torch", "test_model"}  # the check sees such an import
