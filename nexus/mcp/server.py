"""`nexus mcp`: the tools of tools.py served over stdio with the official `mcp` SDK.

Shell.  The SDK builds each tool's input schema from its signature and its description from its
docstring.  What a tool raises never crashes the server: a `NexusError` comes back as a tool
error carrying the message and the fix, arguments that do not fit the schema as a tool error
naming the argument, anything else as a tool error pointing at a crash log.  Calls run one at a
time (the Service keeps per-workspace state).  stdout carries only the protocol: the SDK's stdio
transport moves file descriptor 1 aside, and logs go to stderr.

Resources (of the current project): `nexus://tasks/{task_id}` is a task file,
`nexus://scratchpads/{name}` a scratchpad, both as markdown.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from nexus import __version__
from nexus.errors import NexusError, ValidationError
from nexus.mcp.projects import Projects
from nexus.mcp.tools import ALL, CORE, READ_ONLY, Reply, Tools
from nexus.redact import redact_data, redactor

log = logging.getLogger("nexus.mcp")

INSTRUCTIONS = """\
nexus keeps a project's work as a dependency graph of markdown task files in a git repository;
every change is a commit. The lifecycle: nexus_create_project (or nexus_resume an existing one)
→ nexus_plan (answer its prompt yourself when it returns one) → nexus_approve with the plan →
nexus_execute (claims ready tasks: run each as a subagent with the model and prompt given) →
nexus_complete / nexus_fail for each → nexus_execute again until nothing is ready →
nexus_status. State survives sessions: tomorrow, nexus_resume picks up where you left off.
Task ids may be shortened to a unique prefix."""


class _Server(MCPServer[Any]):
    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, pydantic.ValidationError):
                return _error(
                    _explain(exc.__cause__),
                    f"call {name} again with arguments that fit its input schema",
                )
            raise


def build(projects: Projects, tool_set: str = "core") -> MCPServer[Any]:
    """The server with the `core` or `all` tool set registered."""
    tools = Tools(projects)
    lock = threading.Lock()
    app = _Server("nexus", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    for name in ALL if tool_set == "all" else CORE:
        app.add_tool(
            _guarded(getattr(tools, name), lock),
            name=name,
            annotations=ToolAnnotations(read_only_hint=name in READ_ONLY),
            structured_output=False,  # the result carries its own structured content
        )

    @app.resource(
        "nexus://tasks/{task_id}",
        name="task",
        title="Task file",
        description="A task file of the current project (frontmatter and body); the id may be "
        "a unique prefix.",
        mime_type="text/markdown",
    )
    @_readable(lock)
    def task_file(task_id: str) -> str:
        svc = projects.service(None)
        task = svc.resolve(svc.snapshot().tasks, task_id)
        return svc.ws.read_text(svc.ws.root / task.path)

    @app.resource(
        "nexus://scratchpads/{name}",
        name="scratchpad",
        title="Scratchpad",
        description="A scratchpad of the current project: a mailbox such as aria_to_code.md, "
        "shared_context.md or orchestrator_feedback.md.",
        mime_type="text/markdown",
    )
    @_readable(lock)
    def scratchpad(name: str) -> str:
        svc = projects.service(None)
        folder = svc.ws.root / "scratchpads"
        path = svc.ws.inside(f"scratchpads/{name.removesuffix('.md')}.md")
        if path.parent != folder.resolve() or not path.is_file():
            have = sorted(p.stem for p in folder.glob("*.md")) if folder.is_dir() else []
            raise ValidationError(
                f"no scratchpad {name!r}", fix=f"use one of: {', '.join(have) or 'none yet'}"
            )
        return path.read_text(encoding="utf-8")

    return app


def serve(projects: Projects, tool_set: str = "core") -> None:
    """Serve over stdio until the client closes the connection."""
    logging.getLogger("nexus").setLevel(logging.INFO)
    build(projects, tool_set).run("stdio")


def _guarded(fn: Callable[..., Reply], lock: threading.Lock) -> Callable[..., CallToolResult]:
    # The server runs with its client's environment (keys included).  Secret values are
    # masked in what a call brings in (a result an agent reports, a message) and in what it
    # gives back (prompts, results, errors), so none is committed or handed to an agent.
    scrub = redactor()

    @functools.wraps(fn)
    def call(**kwargs: Any) -> CallToolResult:
        with lock:
            try:
                reply = fn(**redact_data(kwargs, scrub))
            except NexusError as exc:
                log.info("%s: %s", fn.__name__, exc.message)
                return _error(scrub(exc.message), exc.fix and scrub(exc.fix))
            except Exception as exc:  # a bug: reported to the caller, never a dead server
                from nexus.cli.main import write_crash_log

                log.exception("%s failed", fn.__name__)
                path = write_crash_log(["mcp", fn.__name__])
                return _error(
                    scrub(f"nexus failed unexpectedly ({type(exc).__name__}: {exc})"),
                    f"this is a bug in nexus, not in your project; the details are in {path} "
                    "— please attach that file to a bug report",
                )
        return CallToolResult(
            content=[TextContent(type="text", text=scrub(reply.text))],
            structured_content=redact_data(reply.data, scrub),
        )

    return call


def _readable(lock: threading.Lock) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """A resource reader that runs alone and turns a `NexusError` into a resource error."""

    def wrap(read: Callable[..., str]) -> Callable[..., str]:
        scrub = redactor()  # as for tools: no secret value of the environment goes out

        @functools.wraps(read)
        def call(**kwargs: Any) -> str:
            with lock:
                try:
                    return scrub(read(**kwargs))
                except NexusError as exc:
                    raise ResourceError(scrub(str(exc))) from None

        return call

    return wrap


def _error(message: str, fix: str | None) -> CallToolResult:
    text = f"error: {message}" + (f"\nfix: {fix}" if fix else "")
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": message, "fix": fix},
        is_error=True,
    )


def _explain(exc: pydantic.ValidationError) -> str:
    problems: list[str] = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            problems.append(f"the required argument {where!r} is missing")
        else:
            got = repr(err.get("input"))
            got = got if len(got) <= 80 else got[:77] + "..."
            problems.append(f"argument {where!r}: {err['msg']} (got {got})")
    return "; ".join(problems) or str(exc)


__all__: Sequence[str] = ("build", "serve")
