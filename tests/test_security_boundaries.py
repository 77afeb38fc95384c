"""The boundaries an agent or an MCP client could push against: the API engines' tools, the MCP
server's names and paths, the environment each engine's child gets, the agent CLIs' default
permission flags, and YAML loading."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from nexus.engines.base import Job
from nexus.engines.toolbox import MAX_WRITE_CHARS, Toolbox
from tests.conftest import REPO_ROOT, git, run_nexus
from tests.test_mcp import Client, serve

KEY = "sk-ant-canary-mcp-4b1d2c3e4f5a"


# -- the API engines' tools --------------------------------------------------------------------


@pytest.fixture
def box(workspace: Path, tmp_path: Path) -> Toolbox:
    """The tools as an API agent gets them: the repository top is the working folder and the
    workspace (here the same folder) holds the control files."""
    (tmp_path / "outside.txt").write_text("outside secret")
    return Toolbox(workspace, workspace)


def refused(box: Toolbox, tool: str, **args: str) -> str:
    outcome = box.call(tool, args)
    assert outcome.is_error, (tool, args, outcome.text)
    return outcome.text


def test_tools_refuse_dot_dot_absolute_paths_and_links_leading_out(
    box: Toolbox, workspace: Path, tmp_path: Path
) -> None:
    (workspace / "out_link").symlink_to(tmp_path)
    (workspace / "file_link.txt").symlink_to(tmp_path / "outside.txt")
    (workspace / "loop").symlink_to(workspace / "loop")
    for path in (
        "../outside.txt",
        "src/../../outside.txt",
        str(tmp_path / "outside.txt"),
        "/etc/passwd",
        "out_link/outside.txt",
        "file_link.txt",
        "loop/x",
        "",
        "a\x00b",
    ):
        assert "refused" in refused(box, "read_file", path=path), path
        assert "refused" in refused(box, "write_file", path=path or "", content="x"), path
        if path:
            refused(box, "list_files", path=path)
    assert (tmp_path / "outside.txt").read_text() == "outside secret"


def test_tools_keep_agents_out_of_git_nexus_and_the_control_files(
    box: Toolbox, workspace: Path
) -> None:
    """A hook in .git/hooks runs for the person at their next commit; a task's `verify`, an
    engine's `argv` or a persona's engine would make the daemon run any command: none of them
    is writable by an agent, whatever the spelling or the link used."""
    hooks = workspace / ".git" / "hooks"
    (workspace / "hooks_link").symlink_to(hooks)
    config_before = (workspace / "nexus.yaml").read_text()
    for path in (
        ".git/hooks/pre-commit",
        ".GIT/hooks/pre-commit",
        "hooks_link/post-checkout",
        "./.git/config",
        "sub/.git/config",
        ".nexus/results/other-task.json",
        ".nexus/running/t.pids",
        "nexus.yaml",
        "./NEXUS.yaml" if sys.platform == "darwin" else "nexus.yaml",
        "tasks/evil.md",
        "tasks/a/../evil.md",
        "agents/code.md",
        "plans/p.yaml",
        "prompts/task.md",
    ):
        text = refused(box, "write_file", path=path, content="#!/bin/sh\ntouch pwned\n")
        assert "off limits" in text or "control files" in text, (path, text)
    for path in (".git/config", "hooks_link/pre-commit.sample", ".nexus/events.jsonl"):
        assert "off limits" in refused(box, "read_file", path=path)
    assert not (hooks / "pre-commit").exists() and not (hooks / "post-checkout").exists()
    assert (workspace / "nexus.yaml").read_text() == config_before
    assert not (workspace / "tasks" / "evil.md").exists()
    # Reading a control file is fine; scratchpads are the agents' own to append to.
    assert "engines" in box.call("read_file", {"path": "nexus.yaml"}).text
    assert not box.call(
        "write_file", {"path": "scratchpads/code_to_beta.md", "content": "hi"}
    ).is_error


def test_tools_cap_what_one_call_writes_and_reads(box: Toolbox, workspace: Path) -> None:
    text = refused(box, "write_file", path="huge.txt", content="x" * (MAX_WRITE_CHARS + 1))
    assert "more than one write may hold" in text and not (workspace / "huge.txt").exists()
    big = workspace / "big.log"
    with big.open("w") as fh:
        fh.write("y" * 5_000_000)
    read = box.call("read_file", {"path": "big.log"})
    assert not read.is_error and "[truncated: the file has 5000000 bytes]" in read.text
    assert len(read.text) < 200_000


# -- child environments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "own"),
    [
        ("claude-code", {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"}),
        ("anthropic", {"ANTHROPIC_API_KEY"}),
        ("openai", {"OPENAI_API_KEY"}),
        ("codex", {"OPENAI_API_KEY", "CODEX_API_KEY"}),
        ("gemini", {"GEMINI_API_KEY", "GOOGLE_API_KEY"}),
        ("command", set()),
        ("script", set()),
        ("some-plugin", set()),
    ],
)
def test_each_engine_child_gets_only_its_own_providers_keys(
    engine: str, own: set[str], workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nexus.runner import job_env
    from nexus.store import Workspace
    from nexus.task import Task

    secrets = {
        "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "CODEX_API_KEY",
        "GEMINI_API_KEY", "GOOGLE_API_KEY", "NEXUS_TOKEN", "NODE_AUTH_TOKEN", "NPM_TOKEN",
        "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DATABASE_PASSWORD",
    }  # fmt: skip
    for name in secrets:
        monkeypatch.setenv(name, f"canary-{name.lower()}")
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=512")
    task = Task(id="t1", title="x", path="tasks/t1.md")
    env = job_env(engine, {}, Workspace(workspace), task)
    assert {k for k in env if k in secrets} == own
    assert env["NEXUS_TASK_ID"] == "t1" and "PATH" in env
    # A person can hand an engine one more variable by name, and only that one.
    named = job_env(engine, {"env": ["DATABASE_PASSWORD"]}, Workspace(workspace), task)
    assert {k for k in named if k in secrets} == own | {"DATABASE_PASSWORD"}
    if engine == "claude-code":
        assert env["NODE_OPTIONS"] == "--max-old-space-size=512"


# -- agent CLIs' permissions -------------------------------------------------------------------


def job(tmp_path: Path, **settings: Any) -> Job:
    return Job(task_id="t1", prompt="do it", workdir=tmp_path, workspace=tmp_path,
               settings=settings)  # fmt: skip


def test_agent_clis_default_to_their_safe_permission_modes(tmp_path: Path) -> None:
    from nexus.engines import claude_code, codex, gemini

    dangerous = (
        "bypassPermissions", "--dangerously-skip-permissions", "danger-full-access",
        "--dangerously-bypass-approvals-and-sandbox", "yolo", "--yolo", "-y", "--full-auto",
    )  # fmt: skip
    claude = claude_code.build_argv(job(tmp_path), "claude", None, True)
    assert claude[claude.index("--permission-mode") + 1] == "acceptEdits"
    cx = codex.build_argv(job(tmp_path), "codex")
    assert cx[cx.index("--sandbox") + 1] == "workspace-write"
    gm = gemini.build_argv(job(tmp_path), "gemini")
    assert gm[gm.index("--approval-mode") + 1] == "auto_edit"
    for argv in (claude, cx, gm):
        assert not set(argv[:-1]) & set(dangerous), argv
    # A dangerous mode only when a person sets it.
    forced = claude_code.build_argv(
        job(tmp_path, permission_mode="bypassPermissions"), "claude", None, True
    )
    assert "bypassPermissions" in forced
    template = (REPO_ROOT / "workspace-template" / "nexus.yaml").read_text()
    assert "permission_mode: acceptEdits" in template and "bypassPermissions\n" not in template


def test_a_prompt_that_looks_like_a_flag_stays_the_prompt(tmp_path: Path) -> None:
    from nexus.engines import claude_code, codex, gemini

    sneaky = "--dangerously-skip-permissions --permission-mode bypassPermissions"
    j = Job(task_id="t1", prompt=sneaky, workdir=tmp_path, workspace=tmp_path)
    claude = claude_code.build_argv(j, "claude", None, True)
    assert claude[-2:] == ["--", sneaky]
    assert codex.build_argv(j, "codex")[-2:] == ["--", sneaky]
    assert gemini.build_argv(j, "gemini")[1] == f"--prompt={sneaky}"


# -- YAML --------------------------------------------------------------------------------------


def test_yaml_is_only_ever_loaded_safely() -> None:
    """Every yaml.load in the package passes the safe loader; no unsafe entry point is used."""
    calls = []
    for path in (REPO_ROOT / "nexus").rglob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Attribute) and node.attr in (
                "unsafe_load", "full_load", "load_all", "unsafe_load_all", "Loader",
                "UnsafeLoader", "FullLoader",
            ):  # fmt: skip
                raise AssertionError(f"{path}:{node.lineno} uses yaml.{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and ast.unparse(node.func.value) == "yaml"
            ):
                loader = {k.arg: ast.unparse(k.value) for k in node.keywords}.get("Loader", "")
                # The safe loader itself, or a name bound to it in the same file.
                bound = re.search(rf"\b{re.escape(loader)} = \S*safe_loader\(\)", source)
                safe = "safe_loader()" in loader or (loader.isidentifier() and bound)
                assert safe, f"{path}:{node.lineno}: {loader or 'no Loader'}"
                calls.append(path.name)
    assert calls  # the walk did find the loads
    import yaml

    from nexus.frontmatter import safe_loader

    loader = safe_loader()  # SafeLoader or CSafeLoader underneath: the safe constructor only
    assert issubclass(loader, yaml.constructor.SafeConstructor)
    assert not issubclass(loader, yaml.constructor.FullConstructor)


def test_python_tags_in_any_yaml_file_run_nothing(workspace: Path, tmp_path: Path) -> None:
    bomb = f'!!python/object/apply:os.system ["touch {tmp_path}/pwned"]'
    (workspace / "tasks" / "evil.md").write_text(f"---\ntitle: {bomb}\n---\n")
    out = run_nexus("validate", cwd=workspace, check=False)
    assert out.returncode != 0 and "tasks/evil.md" in out.stdout + out.stderr
    (workspace / "tasks" / "evil.md").unlink()
    (workspace / "plans").mkdir(exist_ok=True)
    (workspace / "plans" / "evil.yaml").write_text(f"goal: x\ntasks:\n  a: {bomb}\n")
    run_nexus("approve", "evil", cwd=workspace, check=False)
    config = workspace / "nexus.yaml"
    config.write_text(config.read_text() + f"\nextra: {bomb}\n")
    run_nexus("status", cwd=workspace, check=False)
    assert not (tmp_path / "pwned").exists()


# -- MCP ---------------------------------------------------------------------------------------


def test_mcp_names_and_paths_cannot_leave_the_workspace(workspace: Path, tmp_path: Path) -> None:
    root = workspace.parent
    secret = tmp_path / "secret.md"
    secret.write_text("outside-secret-canary")
    pads = workspace / "scratchpads"
    (pads / "leak_to_code.md").symlink_to(secret)
    (pads / "gitcfg_to_code.md").symlink_to(workspace / ".git" / "config")
    (workspace / "secretlink").symlink_to(secret)
    (workspace / "plans").mkdir(exist_ok=True)
    (workspace / "plans" / "linked.yaml").symlink_to(secret)
    (root / "elsewhere").symlink_to(tmp_path)  # a "project" that is a link out of the root
    git("add", "-A", cwd=workspace)
    git("commit", "-qm", "hostile links", cwd=workspace)
    task = run_nexus("add", "Only task", "--role", "code", cwd=workspace).stdout.strip()
    before = git("rev-parse", "HEAD", cwd=workspace)

    async def scenario(c: Client) -> None:
        for name in ("leak_to_code", "gitcfg_to_code", "../nexus.yaml", "..%2Fnexus",
                     "%2e%2e%2fsecret", "/etc/passwd", "..", "."):  # fmt: skip
            try:
                page = await c.session.read_resource(f"nexus://scratchpads/{name}")
            except Exception as exc:  # refused: a resource error
                assert "outside-secret" not in str(exc), name
            else:
                text = json.dumps([getattr(x, "text", "") for x in page.contents])
                assert "outside-secret" not in text and "[core]" not in text, name
        for path in ("secretlink", "../" * 8 + "etc/passwd", str(secret), ".nexus/events.jsonl",
                     ".GIT/config"):  # fmt: skip
            text = await c.error("nexus_add_context", task_id=task, paths=[path])
            assert "outside" in text or ".git/" in text or "does not" in text, (path, text)
        for project in ("elsewhere", "../", "..", "/tmp", "proj/../..", "%2e%2e"):
            text = await c.error("nexus_status", project=project)
            assert "projects root" in text or "no project" in text, (project, text)
        for name in ("../escape", "a/b", "..", ".hidden", "a\nb", "$(touch pwned)"):
            await c.error("nexus_create_project", name=name)
        for sender, to in (("../../x", "code"), ("code", "../x"), ("code", "/etc/passwd"),
                           ("code", "x_to_y"), ("code\nfrom: prime", "code")):  # fmt: skip
            await c.error("nexus_send_message", sender=sender, to=to, text="hi")
        await c.error("nexus_read_messages", role="../code")
        for plan in ("linked", "../../secret", "/etc/passwd", "..%2Fx"):
            text = await c.error("nexus_approve", plan=plan)
            assert "outside-secret" not in text, plan
        await c.error("nexus_approve", plan_text="goal: x\ntasks: {}\n", name="../../evil")
        await c.call("nexus_status")  # still serving

    serve(root, scenario, "--workspace", str(workspace), "--tools", "all")
    assert git("rev-parse", "HEAD", cwd=workspace) == before
    assert not (root / "escape").exists() and not (root.parent / "evil.yaml").exists()
    assert sorted(p.name for p in tmp_path.rglob("pwned*")) == []


def test_mcp_masks_the_servers_keys_in_what_comes_in_and_goes_out(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Claude Code agent that reports its key in a result, or a message carrying it: the
    MCP server (running with the client's environment) masks it before anything is written;
    the prompts nexus_execute hands out carry no key."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    task = run_nexus("add", "Echo task", "--role", "code", cwd=workspace).stdout.strip()

    async def scenario(c: Client) -> None:
        run = await c.call("nexus_execute")
        assert KEY not in json.dumps(run)
        await c.call("nexus_send_message", sender="code", to="beta", text=f"key={KEY}")
        done = await c.call("nexus_complete", task_id=task, result=f"used {KEY} to log in")
        assert KEY not in json.dumps(done)
        result = await c.call("nexus_result", task_id=task)
        assert "<ANTHROPIC_API_KEY redacted>" in result["_text"] and KEY not in result["_text"]

    serve(workspace.parent, scenario, "--workspace", str(workspace), "--tools", "all")
    history = git("log", "-p", "--all", cwd=workspace)
    assert KEY not in history and "<ANTHROPIC_API_KEY redacted>" in history
    for path in workspace.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert KEY not in path.read_text(errors="replace"), path
    assert os.environ["ANTHROPIC_API_KEY"] == KEY  # the key itself was not touched
