"""The package works when installed normally, and the code stays lint- and type-clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_a_built_wheel_ships_the_template_and_prompts(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = list(wheels.glob("*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import nexus, nexus.resources as r;print(nexus.__file__); print(r.template_dir())",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module, template = where.stdout.split()
    assert module.startswith(str(target)) and template.startswith(str(target))
    subprocess.run(
        [sys.executable, "-m", "nexus", "init", "ws"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "ws" / "agents" / "prime.md").is_file()
    assert (target / "nexus" / "web" / "static" / "index.html").is_file()
    assert (tmp_path / "ws" / ".gitignore").read_text().strip() == ".nexus/"


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_ruff_finds_nothing() -> None:
    lint = _tool("ruff", "check", "nexus", "tests", "benchmarks")
    assert lint.returncode == 0, lint.stdout
    fmt = _tool("ruff", "format", "--check", "nexus", "tests", "benchmarks")
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.slow
def test_mypy_strict_finds_nothing() -> None:
    out = _tool("mypy")
    assert out.returncode == 0, out.stdout
