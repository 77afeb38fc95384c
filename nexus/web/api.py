"""The REST API: each route checks its input, calls the service (actor `web`) and returns JSON.

Shell.  A route is a plain function `(service, args) -> JSON value`, declared with the fields it
takes; `endpoints` turns the table into starlette routes (run in a worker thread, one at a time:
the service keeps a snapshot) and `schema.openapi` turns it into the OpenAPI document.

Errors are JSON `{"error", "fix"}`: 404 unknown id, 422 invalid input (with `field`), 409 a move
the lifecycle refuses or a locked workspace, 400 any other rule of the workspace.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nexus.errors import GitError, NexusError, TransitionError, WorkspaceError
from nexus.redact import redact_data, redactor
from nexus.service import Service, Snapshot, status_counts
from nexus.task import Status, Task, id_problem
from nexus.web import schema
from nexus.web.schema import Field, Invalid, array, ref

log = logging.getLogger("nexus.web")
MAX_BODY = 1024 * 1024


class NotFound(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


class Backend:
    """The server's one Service, used by one thread at a time."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.lock = threading.Lock()

    def locked(self, fn: Callable[[Service], Any]) -> Any:
        with self.lock:
            return fn(self.svc)


@dataclass
class Args:
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Service, Args], Any]
ROUTES: list[dict[str, Any]] = []


def route(
    method: str,
    path: str,
    summary: str,
    response: dict[str, Any],
    *,
    ok: int = 200,
    body: Sequence[Field] | None = None,
    query: Sequence[Field] = (),
    errors: Sequence[int] = (),
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "name": fn.__name__,
            "summary": summary,
            "response": response,
            "ok": ok,
            "query": tuple(query),
            "errors": tuple(errors),
            "path_params": tuple(p[1:-1] for p in path.split("/") if p.startswith("{")),
            "handler": fn,
        }
        if body is not None:
            entry["body"] = tuple(body)
        ROUTES.append(entry)
        return fn

    return register


# -- tasks ---------------------------------------------------------------------------------------


def _task(svc: Service, tid: str) -> tuple[Task, Snapshot]:
    snap = svc.snapshot()
    task = snap.tasks.get(tid)
    if task is None:
        raise NotFound(f"no task {tid!r}", "see the ids with GET /api/tasks")
    return task, snap


def _loaded(svc: Service, task: Task) -> Task:
    """The task with its body, re-read from its file."""
    try:
        return svc.ws.load_task(task)[0]
    except FileNotFoundError:  # deleted since the snapshot
        raise NotFound(f"no task {task.id!r}", "see the ids with GET /api/tasks") from None


def _changed(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, **task.summary()}


@route(
    "GET",
    "/api/tasks",
    "List tasks (with counts by status)",
    schema.ref("TaskList"),
    query=schema.TASK_FILTERS,
)
def list_tasks(svc: Service, a: Args) -> Any:
    snap = svc.snapshot()
    q = a.query
    wanted = set(q["status"] or ())
    tasks = sorted(
        (
            t
            for t in snap.tasks.values()
            if (not wanted or t.status in wanted)
            and (q["role"] is None or t.role == q["role"])
            and (q["kind"] is None or t.kind == q["kind"])
            and (q["parent"] is None or t.parent == q["parent"])
        ),
        key=lambda t: (t.created or "", t.id),
    )
    counts, progress = status_counts(snap.tasks)
    return {
        "name": svc.ws.config.name,
        "goal": svc.ws.config.goal,
        "counts": counts,
        "progress": progress,
        "tasks": [t.summary() for t in tasks],
        "broken": [e.to_json() for e in snap.broken],
        "budget": svc.budget(snap).to_json(),
    }


@route(
    "POST",
    "/api/tasks/create",
    "Create a task",
    ref("TaskChange"),
    ok=201,
    body=schema.TASK_CREATE,
    errors=(400,),
)
def create_task(svc: Service, a: Args) -> Any:
    b = a.body
    task = svc.add(
        b["title"],
        kind=b["kind"] or "task",
        size=b["size"] or "M",
        role=b["role"],
        deps=b["deps"] or (),
        parent=b["parent"],
        priority=b["priority"] or "normal",
        acceptance=b["acceptance"] or (),
        body=b["body"] or "",
    )
    return _changed(task)


@route(
    "GET",
    "/api/tasks/{id}",
    "A task: fields, body, result, why, history",
    ref("TaskDetail"),
    errors=(404,),
)
def get_task(svc: Service, a: Args) -> Any:
    from nexus.prompts import extract_result

    task, snap = _task(svc, a.path["id"])
    loaded = _loaded(svc, task)
    return {
        "task": loaded.summary(),
        "body": loaded.body,
        "result": extract_result(loaded.body),
        "why": svc.why(loaded, snap),
        "history": [e.to_json(task.id) for e in svc.log(task.id)],
    }


@route("GET", "/api/tasks/{id}/status", "A task's status", ref("TaskStatus"), errors=(404,))
def task_status(svc: Service, a: Args) -> Any:
    task, snap = _task(svc, a.path["id"])
    return {
        "task_id": task.id,
        "title": task.title,
        "status": str(task.status),
        "progress": svc.progress(task, snap)["progress"],
        "why": svc.why(task, snap),
    }


@route(
    "GET",
    "/api/tasks/{id}/result",
    "A task's result (its last '## Result' section)",
    ref("TaskResult"),
    errors=(404,),
)
def task_result(svc: Service, a: Args) -> Any:
    from nexus.prompts import extract_result

    loaded = _loaded(svc, _task(svc, a.path["id"])[0])
    return {
        "task_id": loaded.id,
        "status": str(loaded.status),
        "result": extract_result(loaded.body) or None,
    }


@route(
    "GET",
    "/api/tasks/{id}/progress",
    "Attempts, times, whether an agent runs it, why it waits",
    ref("TaskProgress"),
    errors=(404,),
)
def task_progress(svc: Service, a: Args) -> Any:
    task, snap = _task(svc, a.path["id"])
    return svc.progress(task, snap)


@route(
    "DELETE",
    "/api/tasks/{id}",
    "Cancel a task (its file and history stay)",
    ref("TaskChange"),
    errors=(404, 409),
)
def cancel_task(svc: Service, a: Args) -> Any:
    task, _ = _task(svc, a.path["id"])
    return _changed(svc.set_status(task.id, Status.CANCELLED, reason="cancelled from the web"))


@route(
    "POST",
    "/api/tasks/{id}/move",
    "Complete, fail, cancel or retry a task",
    ref("TaskChange"),
    body=schema.TASK_MOVE,
    errors=(400, 404, 409),
)
def move_task(svc: Service, a: Args) -> Any:
    task, _ = _task(svc, a.path["id"])
    action = a.body["action"]
    reason = a.body["reason"] or None
    moved = svc.set_status(
        task.id,
        schema.MOVES[action],
        reason=f"{action} from the web",
        result=a.body["result"] if action == "complete" else None,
        error=(reason or "failed from the web") if action == "fail" else None,
    )
    return _changed(moved)


@route(
    "POST",
    "/api/pipeline",
    "Create the four-phase pipeline (aria → code → alpha → beta)",
    array(ref("Task")),
    ok=201,
    body=schema.PIPELINE,
    errors=(400,),
)
def create_pipeline(svc: Service, a: Args) -> Any:
    from nexus import pipeline

    return [t.summary() for t in pipeline.create(svc, a.body["description"], a.body["parent"])]


# -- agents and messages -------------------------------------------------------------------------


def _role(svc: Service, role: str, also: Sequence[str] = ()) -> str:
    if role not in svc.roles() and role not in also:
        raise NotFound(f"no agent {role!r}", f"use one of: {', '.join([*svc.roles(), *also])}")
    return role


@route(
    "GET",
    "/api/agents/status",
    "Every role: engine, session, current tasks, status",
    {"type": "object", "additionalProperties": ref("Agent")},
)
def agents_status(svc: Service, a: Args) -> Any:
    svc.snapshot()
    return {row["role"]: row for row in svc.agents_status()}


@route(
    "POST",
    "/api/agents/{id}/message",
    "Send a message from `user` to a role (or `all`)",
    ref("SentMessage"),
    ok=201,
    body=schema.MESSAGE,
    errors=(400, 404),
)
def agent_message(svc: Service, a: Args) -> Any:
    from nexus.scratchpads import pad_path

    to = _role(svc, a.path["id"], also=("all",))
    b = a.body
    sent = svc.send_message("user", to, b["message"], b["type"] or "note", b["task"])
    return {**sent.to_json(), "path": pad_path(sent.frm, sent.to)}


@route(
    "GET",
    "/api/agents/{id}/session",
    "The engine session a role resumes",
    ref("Session"),
    errors=(404,),
)
def agent_session(svc: Service, a: Args) -> Any:
    role = _role(svc, a.path["id"])
    svc.snapshot()
    return svc.role_session(role)


@route("GET", "/api/scratchpads", "The files in scratchpads/", array(ref("Scratchpad")))
def list_scratchpads(svc: Service, a: Args) -> Any:
    return svc.scratchpad_files()


@route(
    "GET",
    "/api/scratchpads/{name}",
    "One scratchpad: text and messages",
    ref("ScratchpadDetail"),
    errors=(404,),
)
def get_scratchpad(svc: Service, a: Args) -> Any:
    pad = svc.scratchpad(a.path["name"])
    if pad is None:
        raise NotFound(f"no scratchpad {a.path['name']!r}", "see the names: GET /api/scratchpads")
    return pad


# -- history and cost ----------------------------------------------------------------------------


@route(
    "GET",
    "/api/log",
    "The journal: commits with their transitions (newest first)",
    array(ref("HistoryEntry")),
    query=schema.LOG_FILTERS,
)
def get_log(svc: Service, a: Args) -> Any:
    tid = a.query["task"]
    if tid is not None and (problem := id_problem(tid)):
        raise Invalid("task", problem)
    limit = a.query["limit"] or 200
    return [e.to_json(tid) for e in svc.log(tid, [f"--max-count={limit}"])]


@route(
    "GET", "/api/cost", "Recorded cost and tokens: totals, by role, by engine, by day", ref("Cost")
)
def get_cost(svc: Service, a: Args) -> Any:
    from nexus import costs

    charges = costs.charges(svc.log())
    summary = costs.summarize(charges, ("role", "engine", "day"))
    days: dict[str, list[costs.Charge]] = {}
    for c in charges:
        days.setdefault(c.day, []).append(c)
    by_day = []
    for row in summary["by"]["day"]:
        split = costs.summarize(days[row["key"]], ("role", "engine"))["by"]
        by_day.append(
            {**row, **{f"by_{dim}": {r["key"]: _no_key(r) for r in split[dim]} for dim in split}}
        )
    by = summary.pop("by")
    return {**summary, "by_role": by["role"], "by_engine": by["engine"], "by_day": by_day}


def _no_key(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "key"}


# -- the HTTP side -------------------------------------------------------------------------------


class JSON(JSONResponse):
    """JSON that also carries what YAML may have put in a task's fields (dates, say)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=str, separators=(",", ":")).encode()


def error(status: int, message: str, fix: str | None = None, **extra: Any) -> JSONResponse:
    return JSON({"error": message, "fix": fix, **extra}, status_code=status)


def _failure(exc: Exception) -> JSONResponse:
    if isinstance(exc, Invalid):
        return error(422, f"{exc.field}: {exc.message}", exc.fix, field=exc.field)
    if isinstance(exc, NotFound):
        return error(404, exc.message, exc.fix)
    if isinstance(exc, NexusError):
        status = 400
        if isinstance(exc, TransitionError | WorkspaceError):
            status = 409
        elif isinstance(exc, GitError):
            status = 500
            log.error("git failed: %s", exc)
        return error(status, exc.message, exc.fix)
    raise exc


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Invalid("body", f"is larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("body", "is not JSON", fix="send a JSON object") from None


def endpoints(backend: Backend) -> list[Route]:
    """The starlette routes of the table.  Secret values of the server's environment (its
    token, keys) are masked in every request body: none is written to the workspace."""
    scrub = redactor()
    out = []
    for r in ROUTES:

        async def endpoint(request: Request, r: dict[str, Any] = r) -> Response:
            try:
                query = schema.check_query(
                    {k: request.query_params.getlist(k) for k in request.query_params},
                    r["query"],
                )
                body = (
                    schema.check_body(redact_data(await _read_json(request), scrub), r["body"])
                    if "body" in r
                    else {}
                )
                args = Args(dict(request.path_params), query, body)
                handler = r["handler"]
                result = await run_in_threadpool(backend.locked, lambda svc: handler(svc, args))
            except (Invalid, NotFound, NexusError) as exc:
                return _failure(exc)
            return JSON(result, status_code=r["ok"])

        out.append(Route(r["path"], endpoint, methods=[r["method"]], name=r["name"]))
    return out
