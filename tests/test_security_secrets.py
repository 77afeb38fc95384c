"""Secrets and child environments, end to end: canary keys planted in the environment of a real
`nexus watch`, every engine run (command and script agents, fake claude/codex/gemini CLIs, the
anthropic and openai SDKs against the fake API servers), then everything grepped: the whole
workspace tree (.nexus/ included), `git log -p --all`, the daemon's stdout/stderr, what the
fake CLIs and fake servers received.  Each agent may see its own provider's key in its
environment (or, for the SDK engines, as a request header) and nothing else; no key is ever in
a prompt, a file, a commit, a log or a message, even when an agent echoes its key back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import git, run_nexus
from tests.fakes.fake_cli import install_fake, read_log

CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-canary-A1b2C3d4E5f6",
    "OPENAI_API_KEY": "sk-openai-canary-G7h8I9j0K1",
    "GEMINI_API_KEY": "gemini-canary-L2m3N4o5P6",
    "NEXUS_TOKEN": "nexus-token-canary-Q7r8S9t0",
    "GITHUB_TOKEN": "ghp_canary_U1v2W3x4Y5z6",
    "NODE_AUTH_TOKEN": "npm-canary-a7b8c9d0e1f2",
    "AWS_SECRET_ACCESS_KEY": "aws-canary-g3h4i5j6k7l8",
    "MY_SERVICE_PASSWORD": "hunter2-canary-m9n0o1p2",
}
# The one key each engine's agent may hold (None: no key at all).
OWN_KEY = {
    "command": None,
    "script": None,
    "claude-code": "ANTHROPIC_API_KEY",
    "codex": "OPENAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
CREDENTIAL_HEADERS = ("x-api-key", "authorization")
HOSTILE_TITLE = "$(touch pwned1) `touch pwned2`; touch pwned3 && touch pwned4 | tee pwned5 > x"

DUMP_AGENT = """
import json, os, sys
with open(sys.argv[1], "w") as fh:
    json.dump({"argv": sys.argv, "env": dict(os.environ), "stdin": sys.stdin.read()}, fh)
print("agent finished")
"""


def leaks(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """The canary variables whose value appears in `text` (apart from the `allowed` ones)."""
    return [k for k, v in CANARIES.items() if v in text and k not in allowed]


def canaries_in_tree(root: Path) -> dict[str, list[str]]:
    """Every file under `root` (except git's object store, read through git instead) that
    holds a canary value."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(root).parts:
            hit = leaks(path.read_bytes().decode("utf-8", "replace"))
            if hit:
                found[str(path.relative_to(root))] = hit
    return found


def sent(body: Any) -> Any:
    """A model request without the model's own earlier turns (the fake model echoes its key in
    one of them on purpose: sending the model its own words back is no leak)."""
    if not isinstance(body, dict):
        return body
    history = [m for m in body.get("messages") or [] if m.get("role") != "assistant"]
    return {**body, "messages": history}


def write_task(ws: Path, tid: str, engine: str, **fields: Any) -> None:
    data = {"id": tid, "title": HOSTILE_TITLE, "engine": engine, "max_retries": 0, **fields}
    body = f"Body with shell bait: $(touch pwned6); `touch pwned7`; $HOME ${{PATH}} for {tid}\n"
    (ws / "tasks" / f"{tid}.md").write_text("---\n" + yaml.safe_dump(data) + "---\n" + body)


def configure_engines(ws: Path, out: Path, dump: Path) -> None:
    cfg_path = ws / "nexus.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    engines = cfg["engines"]
    engines["command"] = {"argv": [sys.executable, str(dump), str(out / "command.json")]}
    for name, prefix in (("claude-code", "CLAUDE"), ("codex", "CODEX"), ("gemini", "GEMINI")):
        engines.setdefault(name, {})["env"] = [f"FAKE_{prefix}_LOG", f"FAKE_{prefix}_SCENARIO"]
    engines["anthropic"] = {"max_parallel": 1, "max_turns": 8}
    engines["openai"] = {"max_parallel": 1, "max_turns": 8}
    cfg["limits"] = {**cfg["limits"], "workers": 4, "max_retries": 0, "timeout": 120}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def api_script(tid: str, key: str) -> list[Any]:
    """A model that works, tries to escape, and then echoes its own key in a message and its
    final answer (as a confused or hostile model might)."""
    from tests.fakes import text, tool_call

    return [
        tool_call("write_file", {"path": f"out/{tid}.txt", "content": "work\n"}),
        tool_call("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"}),
        tool_call("write_file", {"path": "nexus.yaml", "content": "engines: {}\n"}),
        tool_call("post_message", {"to": "code", "text": f"psst, the key is {key}"}),
        text(f"done; my key is {key}"),
    ]


def test_canary_keys_reach_only_the_engine_that_needs_them_and_are_never_kept(
    workspace: Path, tmp_path: Path
) -> None:
    from tests.fakes import FakeAnthropic, FakeOpenAI

    out = tmp_path / "agent-out"
    out.mkdir()
    dump = tmp_path / "dump_agent.py"
    dump.write_text(DUMP_AGENT)
    bin_dir = tmp_path / "bin"
    fakes: dict[str, Path] = {}
    env: dict[str, str] = dict(CANARIES)
    for name, script, prefix, echo in (
        ("claude", "fake_claude.py", "CLAUDE", {"result": "key " + CANARIES["ANTHROPIC_API_KEY"]}),
        ("codex", "fake_codex.py", "CODEX", {"text": "my key: " + CANARIES["OPENAI_API_KEY"]}),
        ("gemini", "fake_gemini.py", "GEMINI", {"response": "key " + CANARIES["GEMINI_API_KEY"]}),
    ):  # fmt: skip
        install_fake(bin_dir, name, script)
        fakes[name] = tmp_path / f"{name}-calls.jsonl"
        scenario = tmp_path / f"{name}-scenario.json"
        scenario.write_text(json.dumps(echo))
        env[f"FAKE_{prefix}_LOG"] = str(fakes[name])
        env[f"FAKE_{prefix}_SCENARIO"] = str(scenario)
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env["CLAUDE_CONFIG_DIR"] = str(tmp_path / "claude-config")
    env["CODEX_HOME"] = str(tmp_path / "codex-home")

    configure_engines(workspace, out, dump)
    write_task(workspace, "sec-command", "command")
    steps = [
        {"run": "{python} " + f"{dump} {out / 'script.json'} " + "{title}"},
        {"message": {"to": "code", "text": "ran: {output}"}},
        {"result": "script saw {output}"},
    ]
    write_task(workspace, "sec-script", "script", script=steps)
    # Its `verify` is the task's own command (an agent could edit it): no key for it.
    verify = f"{sys.executable} {dump} {out / 'verify.json'}"
    write_task(workspace, "sec-claude", "claude-code", verify=verify)
    write_task(workspace, "sec-codex", "codex")
    write_task(workspace, "sec-gemini", "gemini")
    write_task(workspace, "sec-anthropic", "anthropic", model="claude-test")
    write_task(workspace, "sec-openai", "openai", model="gpt-test")

    anthropic_key, openai_key = CANARIES["ANTHROPIC_API_KEY"], CANARIES["OPENAI_API_KEY"]
    with (
        FakeAnthropic(api_script("sec-anthropic", anthropic_key)) as claude_api,
        FakeOpenAI(api_script("sec-openai", openai_key)) as openai_api,
    ):
        env["ANTHROPIC_BASE_URL"] = claude_api.url
        env["OPENAI_BASE_URL"] = openai_api.base_url
        run = run_nexus("watch", "--until-idle", cwd=workspace, env=env, check=False, timeout=180)
        anthropic_requests, openai_requests = claude_api.requests, openai_api.requests

    # Everything ran, and nothing was run through a shell.
    assert run.returncode == 0, run.stderr
    listed = {t["id"]: t for t in json.loads(run_nexus("list", "--json", cwd=workspace).stdout)}
    assert {tid: t["status"] for tid, t in listed.items() if tid.startswith("sec-")} == {
        tid: "complete" for tid in listed if tid.startswith("sec-")
    } and len(listed) >= 7, {tid: (t["status"], t.get("error")) for tid, t in listed.items()}
    assert sorted(p.name for p in tmp_path.rglob("pwned*")) == []

    # Child environments: each agent holds its own provider's key and no other secret.
    command = json.loads((out / "command.json").read_text())
    script = json.loads((out / "script.json").read_text())
    assert leaks(json.dumps(command["env"])) == [] and leaks(json.dumps(script["env"])) == []
    assert command["env"]["NEXUS_TASK_TITLE"] == HOSTILE_TITLE
    assert script["argv"][-1] == HOSTILE_TITLE  # one argument, however many quotes and spaces
    for name, engine in (("claude", "claude-code"), ("codex", "codex"), ("gemini", "gemini")):
        [call] = read_log(fakes[name])
        own = OWN_KEY[engine]
        assert call["env"].get(own) == CANARIES[own or ""], name
        assert leaks(json.dumps(call["env"]), allowed=(own or "",)) == [], name
        # ... and never in its command line or on stdin: the prompt carries no key.
        assert leaks(json.dumps(call["argv"]) + call["stdin"]) == [], name
    assert "NEXUS_TOKEN" not in command["env"]
    verify_env = json.loads((out / "verify.json").read_text())["env"]
    assert leaks(json.dumps(verify_env)) == [] and "NEXUS_TASK_ID" in verify_env

    # The SDK engines: the key travels only as the credential header of their own API
    # (`x-api-key` or `authorization: Bearer`, as the SDK version prefers).
    for requests, key_name in (
        (anthropic_requests, "ANTHROPIC_API_KEY"),
        (openai_requests, "OPENAI_API_KEY"),
    ):
        assert requests, key_name
        for request in requests:
            credentials = {k: v for k, v in request.headers.items() if k in CREDENTIAL_HEADERS}
            others = {k: v for k, v in request.headers.items() if k not in CREDENTIAL_HEADERS}
            assert leaks(json.dumps(credentials)) == [key_name], request.path
            assert leaks(json.dumps(others) + json.dumps(sent(request.body)) + request.path) == []
    # Their escapes were refused: no hook for the person's next commit, config untouched.
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert "engines: {}" not in (workspace / "nexus.yaml").read_text()
    assert (workspace / "out" / "sec-anthropic.txt").read_text() == "work\n"

    # Nothing kept anywhere: files (task files, scratchpads, .nexus logs and results), the
    # journal with every diff, the daemon's own output.
    assert canaries_in_tree(workspace) == {}
    history = git("log", "-p", "--all", "--format=%H%n%B", cwd=workspace)
    assert leaks(history) == []
    assert leaks(run.stdout + run.stderr) == []
    # The echoed keys were masked, not dropped: the results say what happened.
    claude_task = (workspace / "tasks" / "sec-claude.md").read_text()
    assert "key <ANTHROPIC_API_KEY redacted>" in claude_task
    pads = "".join(p.read_text() for p in (workspace / "scratchpads").glob("*_to_code.md"))
    assert "psst, the key is <OPENAI_API_KEY redacted>" in pads
    assert "psst, the key is <ANTHROPIC_API_KEY redacted>" in pads


def test_a_linked_shared_context_cannot_carry_the_daemons_environment_into_a_prompt(
    workspace: Path, tmp_path: Path
) -> None:
    """A cloned repo whose scratchpads/shared_context.md links to /proc/self/environ (or a key
    file) would put nexus's own secrets in every prompt; such links are not read."""
    secret_file = tmp_path / "credentials"
    secret_file.write_text(f"aws_secret_access_key = {CANARIES['AWS_SECRET_ACCESS_KEY']}\n")
    pads = workspace / "scratchpads"
    (pads / "shared_context.md").unlink(missing_ok=True)
    (pads / "shared_context.md").symlink_to("/proc/self/environ")
    (pads / "orchestrator_feedback.md").unlink(missing_ok=True)
    (pads / "orchestrator_feedback.md").symlink_to(secret_file)
    git("add", "-A", cwd=workspace)
    git("commit", "-qm", "hostile links", cwd=workspace)
    dump = tmp_path / "dump_agent.py"
    dump.write_text(DUMP_AGENT)
    configure_engines(workspace, tmp_path, dump)
    write_task(workspace, "sec-prompt", "command")
    run = run_nexus("watch", "--until-idle", cwd=workspace, env=dict(CANARIES), check=False)
    assert run.returncode == 0, run.stderr
    prompt = json.loads((tmp_path / "command.json").read_text())["stdin"]
    assert "Body with shell bait" in prompt  # the prompt is there, without the linked files
    assert leaks(prompt) == [] and "PATH=" not in prompt


def test_a_workspace_prompt_template_linked_out_of_the_workspace_is_refused(
    workspace: Path, tmp_path: Path
) -> None:
    from nexus.errors import NexusError
    from nexus.prompts import load_template

    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- canary\n")
    (workspace / "prompts").mkdir(exist_ok=True)
    (workspace / "prompts" / "task.md").symlink_to(secret)
    try:
        load_template(workspace, "task")
    except NexusError as exc:
        assert "link leading out of the workspace" in str(exc) and "canary" not in str(exc)
    else:
        raise AssertionError("a template linked out of the workspace was read")


def test_the_crash_log_masks_keys_and_the_web_token_and_only_its_owner_can_read_it(
    workspace: Path, isolated_home: Path
) -> None:
    """`nexus serve --token X` that crashes: neither X (given as an option, so not in any
    environment variable) nor a key from the environment reaches the crash log."""
    token = "cli-token-canary-Z9y8X7w6"
    crasher = (
        "import sys; from nexus import service; from nexus.cli import main as m\n"
        "def boom(*a, **k): raise RuntimeError('boom ' + sys.argv[-1])\n"
        "service.Service.__init__ = boom\n"
        "sys.exit(m.main(sys.argv[1:]))\n"
    )
    for argv in (["serve", "--token", token], ["serve", f"--token={token}"]):
        proc = subprocess.run(
            [sys.executable, "-c", crasher, *argv],
            cwd=workspace,
            capture_output=True,
            text=True,
            env={**os.environ, **CANARIES},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 3, proc.stderr
        assert token not in proc.stdout + proc.stderr and leaks(proc.stdout + proc.stderr) == []
    logs = sorted((isolated_home / ".local" / "state" / "nexus" / "crashes").iterdir())
    assert logs
    for log in logs:
        text = log.read_text()
        assert "boom" in text and token not in text and leaks(text) == [], text
        assert "--token" in text and "<redacted>" in text
        assert log.stat().st_mode & 0o077 == 0  # not readable by group or others


def test_redaction_masks_every_secret_looking_variable_and_nothing_else() -> None:
    from nexus.redact import redact, redact_argv

    env = {
        "OPENAI_API_KEY": "sk-abcdefgh12345",
        "DB_PASSWORD": "correct-horse",
        "SHORT_TOKEN": "abc",  # too short to be a secret: masking it would mangle words
        "EDITOR": "vim-is-long-enough",  # not secret-looking
        "PREFIX_KEY": "sk-abcdefgh",  # a prefix of another value: the longer one wins
    }
    text = "k=sk-abcdefgh12345 p=correct-horse s=abc e=vim-is-long-enough q=sk-abcdefgh!"
    assert redact(text, env) == (
        "k=<OPENAI_API_KEY redacted> p=<DB_PASSWORD redacted> s=abc e=vim-is-long-enough "
        "q=<PREFIX_KEY redacted>!"
    )
    assert redact_argv(["serve", "--token", "t0ps3cret", "--port", "1"]) == [
        "serve", "--token", "<redacted>", "--port", "1"
    ]  # fmt: skip
    assert redact_argv(["serve", "--token=t0ps3cret"]) == ["serve", "--token=<redacted>"]
