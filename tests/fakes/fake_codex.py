#!/usr/bin/env python3
"""A stand-in for `codex exec --json` (OpenAI Codex CLI), for tests.

Prints the documented NDJSON events: thread.started, turn.started, item.started/completed
(command_execution, file_change, agent_message), turn.completed with usage, or turn.failed.
Threads are kept as files under $CODEX_HOME (default $HOME/.codex) so `resume ID` of an unknown
thread fails.  Environment (see fake_cli.py): FAKE_CODEX_SCENARIO, FAKE_CODEX_LOG.

Scenario keys (all optional): text, thread_id, usage, commands (list of command strings),
write ({relative path: content}), fail (turn.failed message), error (an "error" event),
rc, stderr, stderr_only, noise, hang, hang_pid_file.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from fake_cli import emit, fail, hang, log_call, parse_flags, scenario, write_files

VALUE_FLAGS = {"--sandbox", "-s", "--model", "-m", "-c", "--config", "--cd", "-C", "--profile"}
BOOL_FLAGS = {"--json", "--skip-git-repo-check", "--full-auto", "--experimental-json"}


def main() -> None:
    log_call("CODEX")
    if sys.argv[1:2] != ["exec"]:
        fail("fake codex only knows `codex exec`", 2)
    unknown = "error: unexpected argument '{}' found"
    opts, rest = parse_flags(sys.argv[2:], VALUE_FLAGS, BOOL_FLAGS, unknown=unknown, unknown_rc=2)
    sc = scenario("CODEX")
    if not opts.get("--json"):
        fail("fake codex only speaks --json")
    if sc.get("stderr_only"):
        fail(sc.get("stderr", "Error: something went wrong"), int(sc.get("rc", 1)))
    home = Path(os.environ.get("CODEX_HOME") or Path(os.environ["HOME"]) / ".codex")
    store = home / "fake-threads"
    store.mkdir(parents=True, exist_ok=True)
    if rest and rest[0] == "resume":
        thread = rest[1]
        rest = rest[2:]
        if not (store / thread).exists():
            fail(f"Error: no rollout found for thread id {thread}")
    else:
        thread = sc.get("thread_id") or str(uuid.uuid4())
    prompt = " ".join(rest)
    with open(store / thread, "a", encoding="utf-8") as f:
        f.write(prompt + "\n")

    if sc.get("noise"):
        print(sc["noise"], flush=True)
    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    if sc.get("hang"):
        hang(sc)
    n = 0
    for command in sc.get("commands") or []:
        item = {"id": f"item_{n}", "type": "command_execution", "command": command,
                "aggregated_output": "", "exit_code": None, "status": "in_progress"}  # fmt: skip
        emit({"type": "item.started", "item": item})
        emit({"type": "item.completed", "item": {**item, "exit_code": 0, "status": "completed"}})
        n += 1
    written = write_files(sc)
    if written:
        changes = [{"path": path, "kind": "add"} for path in written]
        item = {"id": f"item_{n}", "type": "file_change", "changes": changes, "status": "completed"}
        emit({"type": "item.completed", "item": item})
        n += 1
    if sc.get("error"):
        emit({"type": "error", "message": sc["error"]})
    if sc.get("fail"):
        emit({"type": "turn.failed", "error": {"message": sc["fail"]}})
        sys.exit(int(sc.get("rc", 1)))
    text = sc.get("text", f"codex did: {prompt[:40]}")
    emit(
        {
            "type": "item.completed",
            "item": {"id": f"item_{n}", "type": "agent_message", "text": text},
        }
    )
    usage = sc.get("usage", {"input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 50})
    emit({"type": "turn.completed", "usage": usage})
    if sc.get("stderr"):
        sys.stderr.write(sc["stderr"] + "\n")
    sys.exit(int(sc.get("rc", 0)))


if __name__ == "__main__":
    main()
