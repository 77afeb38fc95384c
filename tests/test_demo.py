"""The README's main command works offline, and does real work."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, run_nexus


def test_the_demo_runs_the_four_role_pipeline_offline(tmp_path: Path) -> None:
    out = run_nexus("demo", cwd=tmp_path, timeout=120)
    ws = tmp_path / "nexus-demo"
    assert "3 passed" in out.stdout  # Beta ran Alpha's tests against Code's module, for real
    assert "done in" in out.stdout and "journal (git log)" in out.stdout
    assert (ws / "calc.py").exists() and (ws / "test_calc.py").exists()
    status = json.loads(run_nexus("status", "--json", cwd=ws).stdout)
    assert status["counts"]["complete"] == 5 and status["progress"] == 1.0
    pads = {p.name for p in (ws / "scratchpads").glob("*_to_*.md")}
    assert pads == {"aria_to_code.md", "code_to_alpha.md", "alpha_to_beta.md", "beta_to_aria.md"}
    assert git("status", "--porcelain", cwd=ws) == ""
    assert "calc.py" in git("log", "--name-only", "--format=", cwd=ws)


def test_the_demo_run_inside_another_repository_never_commits_into_it(tmp_path: Path) -> None:
    outer = tmp_path / "my-project"
    outer.mkdir()
    git("init", "-q", cwd=outer)
    (outer / "README").write_text("mine\n")
    git("add", "README", cwd=outer)
    git("commit", "-qm", "mine", cwd=outer)
    run_nexus("demo", cwd=outer, timeout=120)
    assert git("log", "--format=%s", cwd=outer).splitlines() == ["mine"]
    assert (outer / "nexus-demo" / ".git").is_dir()
    assert "3 passed" in git("log", "-p", cwd=outer / "nexus-demo")


def test_the_demo_refuses_to_overwrite_an_existing_workspace(tmp_path: Path) -> None:
    run_nexus("demo", cwd=tmp_path, timeout=120)
    again = run_nexus("demo", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "already a nexus workspace" in again.stderr


def test_doctor_lists_every_engine_with_a_fix_for_the_unusable_ones(tmp_path: Path) -> None:
    rows = {
        r["engine"]: r
        for r in json.loads(run_nexus("doctor", "--json", cwd=tmp_path).stdout)["engines"]
    }
    assert set(rows) >= {
        "claude-code",
        "anthropic",
        "openai",
        "codex",
        "gemini",
        "command",
        "script",
    }
    assert rows["script"]["ok"] is True
    assert rows["anthropic"]["ok"] is False and "ANTHROPIC_API_KEY" in rows["anthropic"]["problem"]


def test_pipeline_creates_four_chained_phases_under_a_milestone(workspace: Path) -> None:
    created = json.loads(run_nexus("pipeline", "OAuth2 login", "--json", cwd=workspace).stdout)
    milestone, *phases = created
    assert milestone["kind"] == "milestone"
    assert [p["role"] for p in phases] == ["aria", "code", "alpha", "beta"]
    assert all(p["parent"] == milestone["id"] for p in phases)
    assert [p["deps"] for p in phases[1:]] == [
        [phases[0]["id"]],
        [phases[1]["id"]],
        [phases[2]["id"]],
    ]
    body = json.loads(run_nexus("show", phases[1]["id"], "--json", cwd=workspace).stdout)["body"]
    assert "scratchpads/aria_to_code.md" in body and "scratchpads/code_to_alpha.md" in body
