#!/usr/bin/env python3
"""A stand-in for `gemini -p … --output-format json` (Google Gemini CLI), for tests.

Prints the documented object {"session_id", "response", "stats": {"models": {M: {"tokens":
{...}}}}} or {"session_id", "error": {"type", "message", "code"}}, with exit codes 0, 1, 42
(bad input) and 53 (turn limit).  Sessions are files under $HOME/.gemini so `-r ID` of an
unknown one fails.  Environment (see fake_cli.py): FAKE_GEMINI_SCENARIO, FAKE_GEMINI_LOG.

Scenario keys (all optional): response, session_id, model, tokens, error ({"message", "code"}),
rc, stderr, stderr_only, write, noise, hang, hang_pid_file.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from fake_cli import emit, fail, hang, log_call, parse_flags, scenario, write_files

VALUE_FLAGS = {
    "-p",
    "--prompt",
    "--output-format",
    "-o",
    "--model",
    "-m",
    "--resume",
    "-r",
    "--approval-mode",
}
BOOL_FLAGS = {"--skip-trust", "--yolo", "-y", "--debug", "-d"}


def main() -> None:
    log_call("GEMINI")
    opts, extra = parse_flags(
        sys.argv[1:], VALUE_FLAGS, BOOL_FLAGS, unknown="Unknown argument: {}", unknown_rc=42
    )
    prompt = opts.get("-p") or opts.get("--prompt")
    if prompt is None or extra:
        fail("fake gemini only knows headless mode (-p PROMPT)", 42)
    sc = scenario("GEMINI")
    if sc.get("stderr_only"):
        fail(sc.get("stderr", "Error: something went wrong"), int(sc.get("rc", 1)))
    store = Path(os.environ["HOME"]) / ".gemini" / "fake-sessions"
    store.mkdir(parents=True, exist_ok=True)
    resume = opts.get("--resume") or opts.get("-r")
    if resume and not (store / resume).exists():
        fail(f"Error resuming session: session {resume} not found", 1)
    session = resume or sc.get("session_id") or str(uuid.uuid4())
    with open(store / session, "a", encoding="utf-8") as f:
        f.write(prompt + "\n")
    if sc.get("hang"):
        hang(sc)
    write_files(sc)
    if sc.get("noise"):
        print(sc["noise"], flush=True)
    model = sc.get("model") or opts.get("-m") or opts.get("--model") or "gemini-2.5-pro"
    tokens = sc.get("tokens", {"prompt": 900, "candidates": 40, "total": 950, "cached": 300,
                               "thoughts": 10, "tool": 0})  # fmt: skip
    stats = {"models": {model: {"api": {"totalRequests": 1}, "tokens": tokens}}, "tools": {}}
    if sc.get("error"):
        error = {"type": "Error", **sc["error"]}
        emit({"session_id": session, "error": error, "stats": stats})
        sys.exit(int(sc.get("rc", 1)))
    emit({"session_id": session, "response": sc.get("response", f"gemini did: {prompt[:40]}"),
          "stats": stats})  # fmt: skip
    if sc.get("stderr"):
        sys.stderr.write(sc["stderr"] + "\n")
    sys.exit(int(sc.get("rc", 0)))


if __name__ == "__main__":
    main()
