"""Request fields: one declaration that both validates input and describes it in the OpenAPI
schema, so the two cannot drift apart.

Pure.  Input is checked the way the CLI's is (click checks types and choices, the service checks
the rest), plus what a command line cannot send but JSON can: wrong types, NUL and other control
characters, lone surrogates.  A broken field raises `Invalid` (HTTP 422, naming the field).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nexus.scratchpads import TYPES as MESSAGE_TYPES
from nexus.task import Kind, Priority, Size, Status

LINE, TEXT, LIST, INTEGER = "line", "text", "list", "integer"
MAX_LINE = 500
MAX_TEXT = 200_000
MAX_ITEMS = 200
# What `_text` refuses, for the schema: control characters (a line: tab only; text: tab and
# line ends too) and the other line separators YAML knows.
_REFUSED = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\x85\\u2028\\u2029"
LINE_PATTERN = f"^[^{_REFUSED}\\n\\r]*$"
TEXT_PATTERN = f"^[^{_REFUSED}]*$"
_LINE, _TEXT = re.compile(LINE_PATTERN), re.compile(TEXT_PATTERN)


class Invalid(Exception):
    def __init__(self, field: str, message: str, fix: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.fix = field, message, fix


@dataclass(frozen=True)
class Field:
    name: str
    kind: str = LINE  # line (one line of text) | text | list (of lines) | integer
    doc: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = 10_000

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.kind == INTEGER:
            out = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        elif self.kind == LIST:
            out = {"type": "array", "maxItems": MAX_ITEMS, "items": _line_schema(self.choices)}
        else:
            out = _line_schema(self.choices) if self.kind == LINE else {"type": "string"}
            out["maxLength"] = MAX_LINE if self.kind == LINE else MAX_TEXT
            if not self.choices:
                out["pattern"] = LINE_PATTERN if self.kind == LINE else TEXT_PATTERN
            if self.required:
                out["minLength"] = 1
        if not self.required and self.kind != LIST:
            out["type"] = [out["type"], "null"]
        if self.doc:
            out["description"] = self.doc
        return out

    def check(self, value: Any) -> Any:
        """The value, checked (None when absent or null)."""
        if value is None:
            if self.required:
                raise Invalid(self.name, "is required")
            return None
        if self.kind == INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid(self.name, "must be an integer")
            if not self.minimum <= value <= self.maximum:
                raise Invalid(self.name, f"must be between {self.minimum} and {self.maximum}")
            return value
        if self.kind == LIST:
            if not isinstance(value, list):
                raise Invalid(self.name, "must be a list of strings")
            if len(value) > MAX_ITEMS:
                raise Invalid(self.name, f"has more than {MAX_ITEMS} items")
            return [self._text(item, LINE) for item in value]
        text = self._text(value, self.kind)
        if self.required and not text.strip():
            raise Invalid(self.name, "must not be empty")
        return text

    def _text(self, value: Any, kind: str) -> str:
        if not isinstance(value, str):
            raise Invalid(
                self.name, "must be a string" + (" (in a list)" if kind != self.kind else "")
            )
        limit = MAX_LINE if kind == LINE else MAX_TEXT
        if len(value) > limit:
            raise Invalid(self.name, f"is longer than {limit} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(self.name, "is not valid Unicode text (a lone surrogate)") from None
        if not (_LINE if kind == LINE else _TEXT).match(value):
            what = "one line without control characters" if kind == LINE else "text"
            raise Invalid(self.name, f"must be {what}", fix="remove control characters")
        if self.choices and value not in self.choices:
            raise Invalid(self.name, f"{value!r} is not allowed", fix=_one_of(self.choices))
        return value


def _line_schema(choices: Sequence[str]) -> dict[str, Any]:
    if choices:
        return {"type": "string", "enum": list(choices)}
    return {"type": "string", "pattern": LINE_PATTERN}


def _one_of(choices: Sequence[str]) -> str:
    return f"use one of: {', '.join(choices)}"


def check_body(data: Any, fields: Sequence[Field]) -> dict[str, Any]:
    """A JSON object's fields, checked; unknown keys are refused (a typo must not pass)."""
    if not isinstance(data, dict):
        raise Invalid("body", "must be a JSON object")
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise Invalid(str(key)[:80], "is not a known field", fix=_one_of(sorted(known)))
    return {f.name: f.check(data.get(f.name)) for f in fields}


def check_query(params: Mapping[str, list[str]], fields: Sequence[Field]) -> dict[str, Any]:
    """Query parameters: a list field takes repeated or comma-separated values; unknown
    parameters are ignored, as browsers and proxies add their own."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = params.get(f.name) or []
        if f.kind == LIST:
            out[f.name] = f.check([v.strip() for r in raw for v in r.split(",")])
        elif not raw:
            out[f.name] = f.check(None)
        elif f.kind == INTEGER:
            try:
                number = int(raw[-1])
            except ValueError:
                raise Invalid(f.name, "must be an integer") from None
            out[f.name] = f.check(number)
        else:
            out[f.name] = f.check(raw[-1])
    return out


def query_schema(f: Field) -> dict[str, Any]:
    """An OpenAPI query parameter for `f` (lists as repeated parameters)."""
    schema = f.schema()
    if f.kind != LIST and isinstance(schema["type"], list):
        schema["type"] = schema["type"][0]  # a query parameter is absent, never null
    return {
        "name": f.name,
        "in": "query",
        "required": False,
        "description": f.doc,
        "schema": schema,
        **({"style": "form", "explode": True} if f.kind == LIST else {}),
    }


def body_schema(fields: Sequence[Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in fields if f.required],
        "properties": {f.name: f.schema() for f in fields},
    }


# -- the requests ------------------------------------------------------------------------------

TASK_CREATE = (
    Field("title", required=True, doc="One line: what to do."),
    Field("kind", choices=tuple(Kind), doc="Default: task."),
    Field("size", choices=tuple(Size), doc="Default: M."),
    Field("role", doc="An agent role (a file in agents/)."),
    Field("deps", LIST, "Ids this task waits for."),
    Field("parent", doc="Id of the enclosing task."),
    Field("priority", choices=tuple(Priority), doc="Default: normal."),
    Field("acceptance", LIST, "Acceptance criteria."),
    Field("body", TEXT, "Description (markdown)."),
)
MOVES = {
    "complete": Status.COMPLETE,
    "fail": Status.FAILED,
    "cancel": Status.CANCELLED,
    "retry": Status.PENDING,
}
TASK_MOVE = (
    Field("action", required=True, choices=tuple(MOVES), doc="retry reopens the task."),
    Field("result", TEXT, "complete: what was done (appended under '## Result')."),
    Field("reason", TEXT, "fail: why it failed."),
)
MESSAGE = (
    Field("message", TEXT, "The message (markdown; JSON text is kept as a json block).", True),
    Field("type", choices=MESSAGE_TYPES, doc="Default: note."),
    Field("task", doc="Id of the task the message is about."),
)
PIPELINE = (
    Field("description", TEXT, "What to build.", True),
    Field("parent", doc="Put the pipeline under this task."),
)
TASK_FILTERS = (
    Field("status", LIST, "Only these statuses.", choices=tuple(Status)),
    Field("role", doc="Only this role."),
    Field("kind", choices=tuple(Kind), doc="Only this kind."),
    Field("parent", doc="Only the children of this task."),
)
LOG_FILTERS = (
    Field("task", doc="Only commits that create or move this task."),
    Field("limit", INTEGER, "At most this many entries (newest first).", minimum=1, maximum=1000),
)


# -- the responses -----------------------------------------------------------------------------

STR: dict[str, Any] = {"type": "string"}
OPT_STR: dict[str, Any] = {"type": ["string", "null"]}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
STRS: dict[str, Any] = {"type": "array", "items": STR}
OBJ: dict[str, Any] = {"type": "object"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(**props: dict[str, Any]) -> dict[str, Any]:
    """An object schema with these properties, all required."""
    return {"type": "object", "required": list(props), "properties": props}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _enum(values: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


COSTS = {"usd": NUM, "runs": INT, "input_tokens": INT, "output_tokens": INT}
TASK = obj(
    id=STR,
    title=STR,
    kind=_enum(tuple(Kind)),
    status=_enum(tuple(Status)),
    size=_enum(tuple(Size)),
    role=OPT_STR,
    deps=STRS,
    parent=OPT_STR,
    priority=_enum(tuple(Priority)),
    engine=OPT_STR,
    model=OPT_STR,
    attempts=INT,
    max_retries={"type": ["integer", "null"]},
    acceptance=STRS,
    touches=STRS,
    assignee=OPT_STR,
    session=OPT_STR,
    created=OPT_STR,
    updated=OPT_STR,
    started=OPT_STR,
    finished=OPT_STR,
    error=OPT_STR,
    cost=OBJ,
    path=STR,
)
COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": {
        **obj(error=STR, fix=OPT_STR),
        "properties": {"error": STR, "fix": OPT_STR, "field": STR},
    },
    "Task": TASK,
    "TaskChange": {
        **TASK,
        "required": ["task_id", *TASK["required"]],
        "properties": {"task_id": STR, **TASK["properties"]},
    },
    "TaskList": obj(
        name=STR,
        goal=STR,
        counts={"type": "object", "additionalProperties": INT},
        progress=NUM,
        tasks=array(ref("Task")),
        broken=array(obj(path=STR, message=STR, fix=OPT_STR)),
        budget=ref("Budget"),
    ),
    "Budget": obj(
        project_usd={"type": ["number", "null"]},
        spent_usd=NUM,
        paused=BOOL,
        reason=OPT_STR,
        paused_tasks={"type": "object", "additionalProperties": STR},
    ),
    "HistoryEntry": obj(
        commit=STR,
        time=INT,
        author=STR,
        subject=STR,
        actor=STR,
        trailers={"type": "object", "additionalProperties": STR},
        created=STRS,
        transitions=array(obj(task=STR, **{"from": STR}, to=STR)),
    ),
    "TaskDetail": obj(
        task=ref("Task"),
        body=STR,
        result=STR,
        why=STRS,
        history=array(ref("HistoryEntry")),
    ),
    "TaskStatus": obj(task_id=STR, title=STR, status=STR, progress=NUM, why=STRS),
    "TaskResult": obj(task_id=STR, status=STR, result=OPT_STR),
    "TaskProgress": obj(
        task_id=STR,
        status=STR,
        attempts=INT,
        max_retries=INT,
        started=OPT_STR,
        finished=OPT_STR,
        assignee=OPT_STR,
        running=BOOL,
        daemon=BOOL,
        waiting=OPT_STR,
        children=obj(complete=INT, total=INT),
        progress=NUM,
        error=OPT_STR,
    ),
    "Agent": obj(
        role=STR,
        name=STR,
        engine=OPT_STR,
        model=OPT_STR,
        session=STR,
        session_id=OPT_STR,
        current_tasks=STRS,
        status=STR,
        queued=INT,
    ),
    "Session": obj(
        role=STR,
        session_id=OPT_STR,
        engine=OPT_STR,
        updated=OPT_STR,
        replaced=STRS,
        current_tasks=STRS,
        status=_enum(("working", "idle", "none")),
    ),
    "Message": obj(
        id=STR,
        time=OPT_STR,
        **{"from": STR},
        to=STR,
        type=STR,
        task=OPT_STR,
        payload=STR,
    ),
    "SentMessage": {
        **obj(id=STR, path=STR),
        "properties": {"id": STR, "path": STR, "from": STR, "to": STR, "type": STR},
    },
    "Scratchpad": obj(
        name=STR,
        path=STR,
        kind=_enum(("mailbox", "context")),
        messages_count=INT,
        bytes=INT,
        modified=STR,
    ),
    "ScratchpadDetail": obj(name=STR, path=STR, kind=STR, text=STR, messages=array(ref("Message"))),
    "Cost": obj(
        **COSTS,
        by_role=array(obj(key=STR, **COSTS)),
        by_engine=array(obj(key=STR, **COSTS)),
        by_day=array(obj(key=STR, **COSTS, by_role=OBJ, by_engine=OBJ)),
    ),
}


def openapi(routes: Sequence[Mapping[str, Any]], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (dicts: method, path, summary, and optionally
    body fields, query fields, ok status, response schema, error statuses)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        params = [query_schema(f) for f in r.get("query", ())]
        for name in r.get("path_params", ()):
            params.append({"name": name, "in": "path", "required": True, "schema": STR})
        responses: dict[str, Any] = {
            str(r.get("ok", 200)): {
                "description": "OK",
                "content": {"application/json": {"schema": r["response"]}},
            }
        }
        for code in (*r.get("errors", ()), 401, 403):
            responses[str(code)] = {
                "description": _ERRORS[code],
                "content": {"application/json": {"schema": ref("Error")}},
            }
        op: dict[str, Any] = {
            "summary": r["summary"],
            "operationId": r["name"],
            "responses": responses,
        }
        if params:
            op["parameters"] = params
        if "body" in r or r.get("query"):
            responses["422"] = {
                "description": _ERRORS[422],
                "content": {"application/json": {"schema": ref("Error")}},
            }
        if "body" in r:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema(r["body"])}},
            }
        paths.setdefault(r["path"], {})[r["method"].lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nexus",
            "version": version,
            "description": "The REST API of a nexus workspace (see docs/web.md). Live events: "
            "WebSocket /ws and server-sent events /api/events.",
        },
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


_ERRORS = {
    400: "The request breaks a rule of the workspace (message and fix)",
    401: "A token is required (Authorization: Bearer <token>)",
    403: "Cross-origin request refused",
    404: "No such task, role or scratchpad",
    409: "The change conflicts with the task's state, or the workspace is locked",
    422: "The request body or a parameter is invalid (the field is named)",
}
