"""What the fake model API servers share: scripted turns, request recording, the HTTP plumbing.

A fake server answers each model request with the next *turn* of its script.  A turn is one of

    "some text"                                      a plain assistant answer
    {"text": "...", "usage": {"input_tokens": 3, "output_tokens": 5}}
    {"tool_calls": [{"name": "write_file", "input": {...}}], "text": "optional"}
    {"error": 429, "retry_after": 0.2}               an HTTP error with the API's own error body
    {"error": {"status": 500, "message": "boom"}}
    {"delay": 3.0, "text": "late"}                   wait first (simulates a hang)
    a `Turn` value, or a callable `fn(request_json) -> turn` (called when its slot comes up)

`usage` overrides the invented token counts (input_tokens, output_tokens; the Anthropic fake
also takes cache_read_input_tokens and cache_creation_input_tokens); `stop_reason` overrides
the stop/finish reason.  Without `usage`, tokens are estimated as ~4 characters each.

A server-wide `responder(request_json) -> turn | None` is asked first for every request; None
falls through to the script.  When the script is used up, every further request gets the text
`SCRIPT_EXHAUSTED` with status 200 (a 500 would set the SDKs retrying and blur what went wrong);
`server.exhausted` counts those replies.

Each server runs on 127.0.0.1 in a background thread (`with FakeX(script) as srv: srv.base_url`),
or as a process: `python -m tests.fakes.<x>_server --script FILE.json [--port 0] [--record F]`
prints `PORT=<n>` as its first stdout line and serves until killed; `--record` appends each
request as a JSON line (credentials redacted).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

SCRIPT_EXHAUSTED = "fake server: script exhausted"
SECRET_HEADERS = ("x-api-key", "authorization", "api-key")


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Turn:
    """One scripted reply.  `status` >= 400 makes it an HTTP error."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    message: str = ""
    error_type: str | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    usage: Mapping[str, int] | None = None
    stop_reason: str | None = None

    @property
    def is_error(self) -> bool:
        return self.status >= 400


TurnLike = str | Mapping[str, Any] | Turn | Callable[[Any], Any]


def text(value: str, **kw: Any) -> Turn:
    return Turn(text=value, **kw)


def tool_call(name: str, input: Mapping[str, Any] | None = None, **kw: Any) -> Turn:
    """A turn that calls one tool; pass `text=` for words before the call."""
    return Turn(tool_calls=(ToolCall(name, dict(input or {})),), **kw)


def error(status: int, message: str = "", retry_after: float | str | None = None) -> Turn:
    return Turn(status=status, message=message, retry_after=retry_after)


def to_turn(item: Any) -> Turn:
    """Normalise one script entry (see the module docstring) into a `Turn`."""
    if isinstance(item, Turn):
        return item
    if isinstance(item, str):
        return Turn(text=item)
    if not isinstance(item, Mapping):
        raise TypeError(f"a script turn must be a str, a dict or a Turn, not {item!r}")
    err = item.get("error")
    if isinstance(err, int):
        err = {"status": err}
    err = dict(err or {})
    calls = [
        ToolCall(c["name"], dict(c.get("input") or c.get("arguments") or {}), c.get("id"))
        for c in item.get("tool_calls", ())
    ]
    return Turn(
        text=item.get("text", ""),
        tool_calls=tuple(calls),
        status=int(err.get("status", 200)),
        message=err.get("message", ""),
        error_type=err.get("type"),
        retry_after=item.get("retry_after", err.get("retry_after")),
        delay=float(item.get("delay", 0.0)),
        usage=item.get("usage"),
        stop_reason=item.get("stop_reason"),
    )


@dataclass(frozen=True)
class Request:
    """One request as the server saw it.  `side` marks requests answered by a built-in
    convenience (e.g. a session-title question) without consuming the script."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    side: bool = False

    def redacted(self) -> dict[str, Any]:
        headers = {k: ("<redacted>" if k in SECRET_HEADERS else v) for k, v in self.headers.items()}
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": headers,
            "body": self.body,
            "side": self.side,
        }


def estimate_tokens(value: Any) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, len(raw) // 4)


def pieces(value: str, size: int = 12) -> Iterator[str]:
    """Split a string the way a model streams it: several small deltas."""
    for start in range(0, len(value), size):
        yield value[start : start + size]


class Exchange:
    """The handler's view of one request, with the writers a fake API needs."""

    def __init__(self, handler: BaseHTTPRequestHandler, request: Request) -> None:
        self._h = handler
        self.request = request
        self._chunked = False

    @property
    def body(self) -> Any:
        return self.request.body

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self._h.send_response(status)
        self._h.send_header("Content-Type", "application/json")
        self._h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self._h.send_header(k, v)
        self._h.end_headers()
        self._h.wfile.write(data)
        self._h.wfile.flush()

    def start_sse(self, headers: Mapping[str, str] | None = None) -> None:
        self._h.send_response(200)
        self._h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self._h.send_header("Cache-Control", "no-cache")
        self._h.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self._h.send_header(k, v)
        self._h.end_headers()
        self._chunked = True

    def send_event(self, data: Any, event: str | None = None) -> None:
        """One SSE event; `data` is JSON-encoded unless it is already a string."""
        payload = data if isinstance(data, str) else json.dumps(data)
        text = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
        self._write_chunk(text.encode())

    def end_sse(self) -> None:
        self._h.wfile.write(b"0\r\n\r\n")
        self._h.wfile.flush()
        self._chunked = False

    def _write_chunk(self, data: bytes) -> None:
        self._h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self._h.wfile.flush()


class FakeServer:
    """Base of the fake API servers: a script of turns, recorded requests, a thread.

    Subclasses set `routes` (path → name of a method taking an `Exchange` and a `Turn`),
    `utility_routes` (path → name of a method taking an `Exchange`), `base_path` (what an SDK
    wants after host:port in its base URL), and `send_error_turn`.
    """

    routes: ClassVar[Mapping[str, str]] = {}  # model endpoints: each request takes a turn
    utility_routes: ClassVar[Mapping[str, str]] = {}  # answered without taking a turn
    base_path: ClassVar[str] = ""

    def __init__(
        self,
        script: Iterable[TurnLike] = (),
        *,
        responder: Callable[[Any], TurnLike | None] | None = None,
        port: int = 0,
        record_to: Path | None = None,
    ) -> None:
        self._script: list[TurnLike] = list(script)
        self._responder = responder
        self._record_to = record_to
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._closing = threading.Event()
        self._counter = 0
        self.exhausted = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what tests look at ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def model_requests(self) -> list[Request]:
        """The requests that took a turn of the script (or its exhausted reply)."""
        return [r for r in self.requests if not r.side and r.path in self.routes]

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def add(self, *turns: TurnLike) -> None:
        with self._lock:
            self._script.extend(turns)

    # -- for subclasses ----------------------------------------------------------------------
    def next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def side_turn(self, body: Any) -> Turn | None:
        """A built-in answer that does not consume the script (None: use the script)."""
        return None

    def next_turn(self, exchange: Exchange) -> Turn:
        body = exchange.body
        if self._responder is not None:
            answer = self._responder(body)
            if answer is not None:
                return to_turn(answer)
        with self._lock:
            item = self._script.pop(0) if self._script else None
            if item is None:
                self.exhausted += 1
        if item is None:
            return Turn(text=SCRIPT_EXHAUSTED)
        if callable(item) and not isinstance(item, Turn | Mapping | str):
            return to_turn(item(body))
        return to_turn(item)

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the server closes so no handler outlives it for long."""
        if seconds > 0:
            self._closing.wait(seconds)

    def send_error_turn(self, exchange: Exchange, turn: Turn) -> None:
        raise NotImplementedError

    def send_not_found(self, exchange: Exchange) -> None:
        self.send_error_turn(
            exchange, Turn(status=404, message=f"no route {exchange.request.path}")
        )

    @staticmethod
    def retry_headers(turn: Turn) -> dict[str, str]:
        return {} if turn.retry_after is None else {"retry-after": str(turn.retry_after)}

    # -- plumbing ----------------------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)
            if self._record_to is not None:
                with self._record_to.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(request.redacted()) + "\n")

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        raw = _read_body(handler)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        side_turn = self.side_turn(body) if parts.path in self.routes else None
        request = Request(
            method=handler.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            side=side_turn is not None,
        )
        self._record(request)
        exchange = Exchange(handler, request)
        route = self.routes.get(parts.path)
        utility = self.utility_routes.get(parts.path)
        if handler.command != "POST" or (route is None and utility is None):
            self.send_not_found(exchange)
            return
        if utility is not None:
            getattr(self, utility)(exchange)
            return
        turn = side_turn or self.next_turn(exchange)
        self.pause(turn.delay)
        if self._closing.is_set():
            handler.close_connection = True
            return
        if turn.is_error:
            self.send_error_turn(exchange, turn)
        else:
            getattr(self, str(route))(exchange, turn)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = b""
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                return out
            out += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (ConnectionError, TimeoutError):
                self.close_connection = True  # the client went away: nothing to report

        def _any(self) -> None:
            server._dispatch(self)

        do_POST = do_GET = do_PUT = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve_main(server_cls: type[FakeServer], argv: Sequence[str] | None = None) -> int:
    """Run a fake server as a process: print `PORT=<n>`, serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog=f"python -m {server_cls.__module__}")
    parser.add_argument("--script", type=Path, help="JSON file: a list of turns")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path, help="append each request to this JSONL file")
    args = parser.parse_args(argv)
    script = json.loads(args.script.read_text(encoding="utf-8")) if args.script else []
    if not isinstance(script, list):
        parser.error("the script file must hold a JSON list of turns")
    for item in script:
        to_turn(item)  # fail now, not on the request that reaches a bad entry
    server = server_cls(script, port=args.port, record_to=args.record).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"PORT={server.port}", flush=True)
    while not stop.wait(0.2):
        pass
    server.close()
    return 0


def now() -> int:
    return int(time.time())
