"""The tooling's versions agree: one package version, ruff pinned once for CI and pre-commit, the CPU set-up's
torch inside the range the package declares."""
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
