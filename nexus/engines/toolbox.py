"""The tool set and the tool loop that the API engines (`anthropic`, `openai`) share.

A model reached through an SDK gets five tools, all confined to the job's working folder:
`read_file`, `write_file`, `list_files`, `post_message` and `finish`.  Every path is resolved
(following symlinks) and must stay inside the folder; a refused or failed call comes back to the
model as a tool error and the run goes on.

Each engine subclasses `ApiEngine` and adapts its API to the `Conversation` protocol (send the
history, get a `Reply`; add the tool results to the history); `run_loop` drives any conversation
to an `EngineResult`, and `describe_failure` turns an SDK exception into a failure value.  The
SDK is imported only when a job runs.
"""

from __future__ import annotations

import contextlib
import email.utils
import importlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from nexus.engines.base import Capabilities, EngineResult, Job, OutgoingMessage, Usage
from nexus.engines.cli_common import forward

MAX_READ_CHARS = 100_000
MAX_WRITE_CHARS = 2_000_000
MAX_LIST_ENTRIES = 500
SKIPPED_DIRS = frozenset({".git", ".nexus", "__pycache__", "node_modules", ".venv"})
# Off limits at any depth: git's own files (a hook written there would run for the person at
# their next commit; .git/config may hold credentials) and nexus's runtime state.
PRIVATE_DIRS = frozenset({".git", ".nexus"})
# The workspace's control files: what the daemon reads to decide what to run (a task's
# `verify`, an engine's `argv`, a persona's engine).  An agent that could rewrite them could
# make nexus run any command, so the tools may read them but not write them.
CONTROL_PATHS = ("nexus.yaml", "tasks", "agents", "plans", "prompts")

GUIDE = """\
You work in one folder on the user's machine. Use the tools: list_files and read_file to look \
around, write_file to create or change files (paths relative to the folder; you cannot leave \
it), post_message to send a message to another role. When the task is done, call finish with \
a short account of the result."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments object


def _schema(required: Sequence[str], **props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": "string", "description": v} for k, v in props.items()},
        "required": list(required),
    }


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("read_file", "Read a text file of the working folder.",
             _schema(["path"], path="path relative to the working folder")),
    ToolSpec("write_file", "Create or overwrite a text file in the working folder.",
             _schema(["path", "content"], path="path relative to the working folder",
                     content="the complete new content of the file")),
    ToolSpec("list_files", "List the files and folders below a folder of the working folder.",
             _schema([], path="folder relative to the working folder (default: the folder)")),
    ToolSpec("post_message", "Send a message to another role's scratchpad.",
             _schema(["to", "text"], to="the receiving role, e.g. code or beta",
                     text="the message (markdown)",
                     type="response, status_update, feedback, ... (default response)")),
    ToolSpec("finish", "End the run; `result` is what you report as the outcome of the task.",
             _schema(["result"], result="the result of the task")),
)  # fmt: skip


def system_prompt(job: Job) -> str:
    return f"{job.system_prompt.strip()}\n\n{GUIDE}".strip()


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    is_error: bool = False


class Refused(Exception):
    """A tool call that must not happen; its message goes back to the model."""


def confine(root: Path, raw: object) -> Path:
    """`raw` resolved against `root`, following symlinks; `Refused` unless it stays inside."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise Refused(f"path must be a non-empty string, not {raw!r}")
    base = root.resolve()
    try:
        target = (base / raw).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable link
        raise Refused(f"cannot resolve {raw!r}: {exc}") from exc
    if target != base and base not in target.parents:
        raise Refused(
            f"{raw!r} is outside the working folder; use a path inside it "
            "('..', absolute paths elsewhere and symlinks leading out are refused)"
        )
    return target


def private_part(root: Path, target: Path) -> str | None:
    """The `.git` or `.nexus` folder on the way from `root` to `target`, if any (compared
    without case: on a case-insensitive disk `.GIT` is `.git`)."""
    parts = target.relative_to(root).parts
    return next((p for p in parts if p.lower() in PRIVATE_DIRS), None)


class Toolbox:
    """Runs tool calls against one working folder and keeps what the run produced.
    `workspace` (default: the folder) is where the control files live."""

    def __init__(self, root: Path, workspace: Path | None = None) -> None:
        self.root = root.resolve()
        ws = (workspace or root).resolve()
        self.control = tuple(ws / name for name in CONTROL_PATHS)
        self.messages: list[OutgoingMessage] = []
        self.result: str | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def call(self, name: str, arguments: Mapping[str, Any] | str | None) -> ToolOutcome:
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                return ToolOutcome(f"error: the arguments of {name} are not valid JSON", True)
        if not isinstance(arguments, Mapping):
            return ToolOutcome(f"error: the arguments of {name} must be a JSON object", True)
        method = getattr(self, f"_tool_{name}", None)
        if method is None or name not in {t.name for t in TOOLS}:
            known = ", ".join(t.name for t in TOOLS)
            return ToolOutcome(f"error: unknown tool {name!r} (available: {known})", True)
        try:
            return ToolOutcome(str(method(**_strings(name, arguments))))
        except Refused as exc:
            return ToolOutcome(f"refused: {exc}", True)
        except OSError as exc:
            return ToolOutcome(f"error: {exc.strerror or exc}", True)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def _confine(self, path: str) -> Path:
        target = confine(self.root, path)
        if private := private_part(self.root, target):
            raise Refused(f"files inside {private} are off limits")
        return target

    def _is_control(self, target: Path) -> bool:
        # Without case: on a case-insensitive disk `TASKS/x.md` is `tasks/x.md`.
        low = str(target).casefold()
        return any(
            low == str(c).casefold() or low.startswith(str(c).casefold() + os.sep)
            for c in self.control
        )

    def _tool_read_file(self, path: str) -> str:
        target = self._confine(path)
        if not target.is_file():
            raise Refused(f"{path!r} is not a file (list_files shows what exists)")
        size = target.stat().st_size
        with target.open(encoding="utf-8", errors="replace") as fh:
            content = fh.read(MAX_READ_CHARS + 1)  # never the whole of a huge file
        if len(content) > MAX_READ_CHARS:
            return content[:MAX_READ_CHARS] + f"\n[truncated: the file has {size} bytes]"
        return content

    def _tool_write_file(self, path: str, content: str) -> str:
        target = self._confine(path)
        if target == self.root or target.is_dir():
            raise Refused(f"{path!r} is a folder, not a file")
        if self._is_control(target):
            raise Refused(
                f"{path!r} is one of nexus's control files (nexus.yaml, tasks/, agents/, "
                "plans/, prompts/): report what should change in your result instead"
            )
        if len(content) > MAX_WRITE_CHARS:
            raise Refused(
                f"{len(content)} characters is more than one write may hold ({MAX_WRITE_CHARS})"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {self._rel(target)}"

    def _tool_list_files(self, path: str = ".") -> str:
        top = self._confine(path)
        if not top.is_dir():
            raise Refused(f"{path!r} is not a folder")
        entries: list[str] = []
        for current, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            base = Path(current)
            entries += [self._rel(base / d) + "/" for d in dirs]
            entries += [self._rel(base / f) for f in sorted(files)]
            if len(entries) > MAX_LIST_ENTRIES:
                cut = f"[cut at {MAX_LIST_ENTRIES} entries: list a subfolder to see more]"
                return "\n".join([*sorted(entries)[:MAX_LIST_ENTRIES], cut])
        return "\n".join(sorted(entries)) or "(empty)"

    def _tool_post_message(self, to: str, text: str, type: str = "response") -> str:
        if not to.strip():
            raise Refused("post_message needs the receiving role in `to`")
        self.messages.append(OutgoingMessage(to=to.strip(), text=text, type=type or "response"))
        return f"message for {to.strip()} queued"

    def _tool_finish(self, result: str) -> str:
        self.result = result
        return "finished"


def _strings(tool: str, arguments: Mapping[str, Any]) -> dict[str, str]:
    spec = next(t for t in TOOLS if t.name == tool)
    allowed = spec.parameters["properties"]
    missing = [k for k in spec.parameters["required"] if k not in arguments]
    if missing:
        raise Refused(f"{tool} needs {', '.join(missing)}")
    out: dict[str, str] = {}
    for key, value in arguments.items():
        if key not in allowed:
            raise Refused(f"{tool} has no argument {key!r} (it takes {', '.join(allowed)})")
        if not isinstance(value, str):
            raise Refused(f"argument {key!r} of {tool} must be a string")
        out[key] = value
    return out


# -- the loop ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: Mapping[str, Any] | str  # OpenAI sends a JSON string, Anthropic an object


@dataclass(frozen=True)
class Reply:
    text: str
    calls: tuple[Call, ...]
    usage: Usage


class Conversation(Protocol):
    def send(self, timeout: float | None) -> Reply:
        """Send the history so far; the model's reply (already part of the history)."""
        ...

    def add_results(self, results: Sequence[tuple[Call, ToolOutcome]]) -> None: ...


class History:
    """What every API conversation keeps: the client, the streaming switch, the fixed part of
    each request (model, tools, system prompt) and the growing history, sent as `history_key`."""

    history_key: ClassVar[str]
    max_tokens_key: ClassVar[str]
    default_max_tokens: ClassVar[int | None] = None

    def __init__(
        self, client: Any, job: Job, request: dict[str, Any], opening: list[dict[str, Any]]
    ) -> None:
        self.client = client
        self.stream = bool(job.settings.get("stream"))
        self.request = request
        self.history = opening
        max_tokens = job.settings.get("max_tokens") or self.default_max_tokens
        if max_tokens:
            self.request[self.max_tokens_key] = int(max_tokens)

    def next_request(self, timeout: float | None) -> dict[str, Any]:
        request = {**self.request, self.history_key: self.history}
        if timeout is not None:
            request["timeout"] = timeout
        return request


@dataclass(frozen=True)
class Failure:
    reason: str
    rate_limited: bool = False
    retry_after: float | None = None


def run_loop(
    job: Job,
    conversation: Conversation,
    *,
    model: str,
    describe: Callable[[Exception], Failure],
) -> EngineResult:
    """Drive `conversation` until the model calls finish or stops calling tools, the turn limit
    (`settings["max_turns"]`, default 30), `job.timeout` or `job.cancel`.  Never raises."""
    start = time.monotonic()
    toolbox = Toolbox(job.workdir, job.workspace)
    max_turns = int(job.settings.get("max_turns", 30))
    prices = job.settings.get("prices") or {}
    usage = Usage()
    text = ""

    def result(ok: bool, **kw: Any) -> EngineResult:
        return EngineResult(
            ok=ok,
            usage=usage,
            cost_usd=cost_usd(usage, prices.get(model)),
            model=model,
            messages=tuple(toolbox.messages),
            duration=time.monotonic() - start,
            **kw,
        )

    try:
        for turn in range(max_turns):
            if job.cancel.is_set():
                return result(False, text=text, reason=f"cancelled after {turn} turns")
            timeout = None
            if job.timeout is not None:
                timeout = job.timeout - (time.monotonic() - start)
                if timeout <= 0:
                    return result(False, text=text, reason=f"timed out after {job.timeout:g}s")
            reply = conversation.send(timeout)
            usage += reply.usage
            if reply.text:
                text = reply.text
                forward(job, reply.text)
            if not reply.calls:
                return result(True, text=text)
            outcomes = []
            for call in reply.calls:
                forward(job, f"[{call.name}]")
                outcomes.append((call, toolbox.call(call.name, call.arguments)))
            conversation.add_results(outcomes)
            if toolbox.result is not None:
                return result(True, text=toolbox.result)
    except Exception as exc:  # SDK errors, and anything unexpected: failures are values
        failure = describe(exc)
        return result(
            False,
            text=text,
            reason=failure.reason,
            rate_limited=failure.rate_limited,
            retry_after=failure.retry_after,
        )
    return result(
        False,
        text=text,
        reason=f"stopped after {max_turns} turns without calling "
        "finish (raise the engine setting max_turns if the task needs more)",
    )


def cost_usd(usage: Usage, price: Mapping[str, float] | None) -> float | None:
    """Dollars for `usage` at `price` (input_per_mtok, output_per_mtok; optional
    cache_read_per_mtok, cache_write_per_mtok, defaulting to the input price)."""
    if not price:
        return None
    per_in = float(price.get("input_per_mtok", 0.0))
    total = (
        usage.input_tokens * per_in
        + usage.output_tokens * float(price.get("output_per_mtok", 0.0))
        + usage.cache_read_tokens * float(price.get("cache_read_per_mtok", per_in))
        + usage.cache_write_tokens * float(price.get("cache_write_per_mtok", per_in))
    )
    return total / 1_000_000


# -- SDK errors as failure values -------------------------------------------------------------


def describe_failure(exc: Exception, *, sdk: Any, api: str, key_env: str, base_url: str) -> Failure:
    """The `Failure` for an exception of the `anthropic` or `openai` SDK (same class names)."""
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        detail = _error_message(exc)
        kind = _error_type(exc)
        if status == 429 or status == 529 or kind in ("rate_limit_error", "overloaded_error"):
            what = "overloaded" if status == 529 or kind == "overloaded_error" else "rate limited"
            return Failure(
                f"{api} API {what} ({status}): {detail}", True, retry_after(exc.response.headers)
            )
        if status in (401, 403):
            return Failure(
                f"{api} API refused the credentials ({status}): {detail}; check "
                f"{key_env} (run `nexus doctor`)"
            )
        if status >= 500:
            return Failure(f"{api} API server error ({status}): {detail}")
        return Failure(f"{api} API rejected the request ({status}): {detail}")
    if isinstance(exc, sdk.APITimeoutError):
        return Failure(f"{api} API at {base_url} did not answer in time (request timed out)")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure(
            f"cannot reach the {api} API at {base_url}: {cause}; check the network "
            "and the engine's base_url setting"
        )
    if isinstance(exc, sdk.APIError):
        return Failure(f"{api} API error: {exc}")
    return Failure(f"{api} engine failed unexpectedly: {type(exc).__name__}: {exc}")


def _error_body(exc: Any) -> Mapping[str, Any]:
    # Anthropic keeps the whole {"type": "error", "error": {...}}; OpenAI keeps only the inner one.
    body = getattr(exc, "body", None)
    if not isinstance(body, Mapping):
        return {}
    inner = body.get("error")
    return inner if isinstance(inner, Mapping) else body


def _error_message(exc: Any) -> str:
    return str(_error_body(exc).get("message") or getattr(exc, "message", "") or exc)


def _error_type(exc: Any) -> str:
    return str(_error_body(exc).get("type") or "")


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                when = email.utils.mktime_tz(parsed)
                return max(0.0, when - (time.time() if now is None else now))
    return None


# -- the engine shell ------------------------------------------------------------------------


class ApiEngine:
    """What the SDK engines share: the key check, the client set-up and the loop.  A subclass
    names its SDK and environment, and supplies `client` and `conversation`."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    sdk_module: ClassVar[str]
    key_env: ClassVar[str]
    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str]
    default_model: ClassVar[str]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        # API engines have no resumable session; they edit files through write_file.
        cls.capabilities = Capabilities(needs_env=(cls.key_env,), can_resume=False)

    def check(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        if env.get(self.key_env):
            return None
        return (
            f"engine {self.name} needs {self.key_env}: set it in the environment, "
            "or run `nexus doctor`"
        )

    def client(self, sdk: Any, job: Job, options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def conversation(self, client: Any, job: Job, model: str) -> Conversation:
        raise NotImplementedError

    def run(self, job: Job) -> EngineResult:
        return self.run_api(job).redacted(job.env)

    def run_api(self, job: Job) -> EngineResult:
        model = str(job.model or job.settings.get("model") or self.default_model)
        problem = self.check(job.settings, job.env)
        if problem is not None:
            return EngineResult.failure(problem, model=model)
        base_url = str(
            job.settings.get("base_url") or job.env.get(self.base_url_env) or self.default_base_url
        )
        options: dict[str, Any] = {
            "api_key": job.env[self.key_env],
            "base_url": base_url,
            "max_retries": int(job.settings.get("max_retries", 2)),
        }
        if job.timeout is not None:
            options["timeout"] = float(job.timeout)
        try:
            sdk = importlib.import_module(self.sdk_module)
            client = self.client(sdk, job, options)
        except Exception as exc:  # a missing or broken SDK install
            return EngineResult.failure(
                f"engine {self.name} cannot set up the {self.sdk_module} SDK: {exc} "
                f"(reinstall nexus, or `pip install {self.sdk_module}`)",
                model=model,
            )
        describe = partial(
            describe_failure, sdk=sdk, api=self.name, key_env=self.key_env, base_url=base_url
        )
        try:
            return run_loop(
                job, self.conversation(client, job, model), model=model, describe=describe
            )
        except Exception as exc:  # run_loop never raises; this guards the set-up of the history
            return EngineResult.failure(describe(exc).reason, model=model)
        finally:
            with contextlib.suppress(Exception):
                client.close()
