#!/usr/bin/env python3
"""A stand-in for `claude -p` (Claude Code 2.1.x headless), for tests.

It parses the flags the real CLI takes (an unknown flag fails like the real one), prints the
documented `json` or `stream-json` output, keeps sessions as files under $CLAUDE_CONFIG_DIR (so
`--resume` of an unknown id fails with the real message), and does what a scenario says.

Environment (see fake_cli.py): FAKE_CLAUDE_SCENARIO, FAKE_CLAUDE_LOG.

Scenario keys (all optional):
    result, session_id, model, usage, total_cost_usd, num_turns   the result fields
    is_error, api_error_status, subtype, errors, rc               failure shapes
    no_result      omit "result" (error subtypes)
    stderr         text for stderr; with "stderr_only" nothing goes to stdout
    write          {relative path: content} written in the cwd through a "Write" tool use
    tool_uses      [{"name", "input"}] shown as tool uses in stream-json
    noise          a non-JSON line printed before the output
    api_retries    how many system/api_retry events (HTTP 429) stream-json shows first
    hang           print the init line, start a child that sleeps, then sleep forever;
                   "hang_pid_file" receives both pids
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fake_cli import emit, fail, hang, log_call, parse_flags, scenario, write_files

VALUE_FLAGS = {
    "--output-format", "--model", "--append-system-prompt", "--resume", "-r",
    "--permission-mode", "--max-turns", "--session-id", "--input-format", "--system-prompt",
    "--fallback-model",
}  # fmt: skip
MANY_FLAGS = {
    "--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools", "--add-dir",
    "--mcp-config", "--tools", "--betas",
}  # fmt: skip
BOOL_FLAGS = {
    "-p", "--print", "--verbose", "--strict-mcp-config", "--fork-session", "-c", "--continue",
    "--dangerously-skip-permissions", "--include-partial-messages",
}  # fmt: skip


def main() -> None:
    log_call("CLAUDE")
    opts, words = parse_flags(sys.argv[1:], VALUE_FLAGS, BOOL_FLAGS, MANY_FLAGS)
    prompt = " ".join(words)
    sc = scenario("CLAUDE")
    fmt = opts.get("--output-format", "text")
    if not (opts.get("-p") or opts.get("--print")):
        fail("fake claude only knows headless mode (-p)")
    if fmt == "stream-json" and not opts.get("--verbose"):
        fail("Error: When using --print, --output-format=stream-json requires --verbose")
    if sc.get("stderr_only"):
        fail(sc.get("stderr", "error: something went wrong"), int(sc.get("rc", 1)))

    store = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "fake-sessions"
    store.mkdir(parents=True, exist_ok=True)
    resume = opts.get("--resume") or opts.get("-r")
    if resume:
        if not (store / resume).exists():
            fail(f"No conversation found with session ID: {resume}")
        session = resume
    else:
        session = sc.get("session_id") or str(uuid.uuid4())
    with open(store / session, "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": prompt}) + "\n")

    model = sc.get("model") or opts.get("--model") or "claude-sonnet-4-5"
    stream = fmt == "stream-json"
    if sc.get("noise"):
        print(sc["noise"], flush=True)
    if stream:
        emit({"type": "system", "subtype": "init", "session_id": session, "model": model,
              "cwd": os.getcwd(), "tools": ["Read", "Write", "Bash"],
              "permissionMode": opts.get("--permission-mode", "default")})  # fmt: skip
    if sc.get("hang"):
        hang(sc)
    for n in range(int(sc.get("api_retries", 0)) if stream else 0):
        emit({"type": "system", "subtype": "api_retry", "attempt": n + 1, "max_retries": 10,
              "retry_delay_ms": 500, "error_status": 429, "session_id": session})  # fmt: skip

    tool_uses = list(sc.get("tool_uses") or [])
    for path in write_files(sc):
        tool_uses.append({"name": "Write", "input": {"file_path": path}})
    if stream:
        for n, use in enumerate(tool_uses):
            block = {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": use["name"],
                "input": use["input"],
            }
            emit({"type": "assistant", "message": {"role": "assistant", "content": [block]},
                  "session_id": session})  # fmt: skip
            result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "ok"}
            emit({"type": "user", "message": {"role": "user", "content": [result]},
                  "session_id": session})  # fmt: skip

    is_error = bool(sc.get("is_error", False))
    text = sc.get("result", f"fake claude did: {prompt[:40]}")
    final: dict[str, Any] = {
        "type": "result",
        "subtype": sc.get("subtype", "success"),
        "is_error": is_error,
        "duration_ms": 12,
        "num_turns": sc.get("num_turns", 1 + len(tool_uses)),
        "session_id": session,
        "total_cost_usd": sc.get("total_cost_usd", 0.0123),
        "usage": sc.get(
            "usage",
            {
                "input_tokens": 100,
                "output_tokens": 20,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 7,
            },
        ),
        "modelUsage": {model: {}},
        "permission_denials": [],
        "some_future_key": {"ignored": True},
    }
    if not sc.get("no_result"):
        final["result"] = text
        if stream:
            content = [{"type": "text", "text": text}]
            emit({"type": "assistant", "message": {"role": "assistant", "content": content},
                  "session_id": session})  # fmt: skip
    for key in ("api_error_status", "errors"):
        if key in sc:
            final[key] = sc[key]
    emit(final)
    if sc.get("stderr"):
        sys.stderr.write(sc["stderr"] + "\n")
    sys.exit(int(sc.get("rc", 1 if is_error else 0)))


if __name__ == "__main__":
    main()
