"""The web server: the dashboard page, the REST API, the live feed, and who may use them.

Shell.  `create_app` builds the starlette app for one workspace; `serve` runs it with uvicorn
on a socket the caller bound.

Access (every HTTP route, `/ws` and `/api/events`):

* Host: without a token only the loopback names (127.0.0.1, localhost, [::1]) are answered, so a
  web page cannot reach the server through a DNS name it controls (DNS rebinding).
* Token: when one is set, a request needs `Authorization: Bearer <token>` or the cookie that
  opening `/?token=<token>` once sets (HttpOnly, SameSite=Strict); else 401.
* Origin: a mutating request (POST, PUT, PATCH, DELETE) or a WebSocket that carries an Origin
  header must come from the server's own origin; else 403.  Browsers always send Origin on those,
  so another site's page cannot act through a person's browser; programs send none.

Refusals are JSON errors (403, 401); a refused WebSocket handshake is answered 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus import __version__
from nexus.service import Service
from nexus.store import Workspace
from nexus.web import api, live, schema

log = logging.getLogger("nexus.web")
STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
COOKIE = "nexus_token"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
}


def is_loopback(host: str) -> bool:
    """Only these names count as local: any other address (127.0.0.2 included) needs a token."""
    return host.strip("[]") in LOOPBACK_HOSTS


def create_app(root: Path, *, token: str | None = None, poll: float = 1.0) -> Starlette:
    """The app for the workspace at `root`.  With `token`, every request must carry it (the
    mode for any bind other than loopback; tests also use it on loopback)."""
    svc = Service(Workspace(root), actor="web", warn=lambda m: log.warning("%s", m))
    backend = api.Backend(svc)
    feed = live.Feed()
    sources = live.Sources(
        svc.ws.root, lambda: backend.locked(Service.snapshot), feed.publish, poll
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        feed.loop = asyncio.get_running_loop()
        await asyncio.to_thread(sources.start)
        try:
            yield
        finally:
            feed.close()
            await asyncio.to_thread(sources.stop)

    document = schema.openapi(api.ROUTES, __version__)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", page),
        Route("/openapi.json", openapi),
        Route("/api/events", live.sse_feed),
        WebSocketRoute("/ws", live.websocket_feed),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *api.endpoints(backend),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, token=token or None)],
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.feed = feed
    app.state.backend = backend
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "no such route", 405: "method not allowed"}.get(status, str(exc))
    return api.error(status, f"{message}: {request.method} {request.url.path}", "see /openapi.json")


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return api.error(500, f"internal error: {type(exc).__name__}", "see the server's log")


# -- access --------------------------------------------------------------------------------------


class Guard:
    """The checks of the module docstring, for HTTP and WebSocket alike (pure ASGI)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = _cookie_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is None and self.token and not self._authorized(headers, scope):
            if self._token_in_query(scope):
                await self._set_cookie(scope, receive, send)
                return
            refusal = api.error(
                401,
                "this server needs a token",
                "send `Authorization: Bearer <token>`, or open /?token=<token> once in the browser",
            )
        if refusal is not None:
            if scope["type"] == "http":
                await refusal(scope, receive, send)
            else:  # uvicorn answers a WebSocket closed before its handshake with a 403
                await send({"type": "websocket.close", "code": 1008})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    out.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope, headers: Headers) -> Response | None:
        host = headers.get("host", "")
        if not self.token and not is_loopback(_hostname(host)):
            return api.error(
                403,
                f"host {host!r} is not answered without a token",
                "open the dashboard at http://127.0.0.1:<port>/, or start the server with --token",
            )
        origin = headers.get("origin")
        checks_origin = scope["type"] == "websocket" or scope.get("method") in MUTATING
        if checks_origin and origin is not None:
            scheme = {"ws": "http", "wss": "https"}.get(scope["scheme"], scope["scheme"])
            if origin != f"{scheme}://{host}":
                return api.error(
                    403,
                    f"cross-origin request from {origin} refused",
                    "use the dashboard served by this server, or send no Origin header",
                )
        return None

    def _authorized(self, headers: Headers, scope: Scope) -> bool:
        assert self.token is not None and self.cookie is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        cookie = HTTPConnection(scope).cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.cookie.encode())

    def _token_in_query(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["path"] != "/" or self.token is None:
            return False
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""]
        return hmac.compare_digest(given[-1].encode(), self.token.encode())

    async def _set_cookie(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.cookie is not None
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.cookie,
            httponly=True,
            samesite="strict",
            secure=scope["scheme"] == "https",
        )
        await response(scope, receive, send)


def _cookie_value(token: str) -> str:
    # The cookie proves the token was given without being the token itself.
    return hashlib.sha256(f"nexus-web-cookie:{token}".encode()).hexdigest()


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# -- running -------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app: Starlette, log_level: str = "warning") -> Any:
    """A uvicorn server that lets live clients go first when it stops, so a stop never waits
    for a browser's open event stream."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.feed.close()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    return Server(config)


def serve(app: Starlette, sock: socket.socket, log_level: str = "warning") -> None:
    """Run until stopped (Ctrl-C, SIGTERM)."""
    make_server(app, log_level).run(sockets=[sock])


__all__ = ["bind", "create_app", "is_loopback", "make_server", "serve"]
