"""The web server as an attacker meets it: every route of the real app (found by walking the
Starlette app's routes, so a new route cannot escape these tests) behind the token and the
Origin check, the WebSocket and SSE feeds included; the token compared in constant time and
never echoed; no CORS grant; no path, encoded or linked, reaching outside the workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus

from nexus.web import app as web_app
from nexus.web.app import create_app
from tests.conftest import git
from tests.test_web_api import live, running

TOKEN = "web-token-canary-5f4dcc3b5aa7"
EVIL = "http://evil.example"
OUTSIDE_SECRET = "outside-secret-canary-e99a18c428cb"


def http_routes(root: Path) -> list[tuple[str, str]]:
    """(method, path) for every HTTP route of the app, path parameters filled with `nope`;
    a Mount is visited at a file it serves."""
    found: list[tuple[str, str]] = []
    for route in create_app(root).routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path + "/app.js"))
        elif isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "nope", route.path)
            found += [(m, path) for m in sorted(route.methods or ["GET"]) if m != "HEAD"]
    return found


def websocket_routes(root: Path) -> list[str]:
    return [r.path for r in create_app(root).routes if isinstance(r, WebSocketRoute)]


def fetch(http: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request; an event stream is closed as soon as its head is in (it never ends)."""
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    with http.stream(method, path, **body, **kw) as r:
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            r.read()
    return r


def said(r: httpx.Response) -> str:
    """Everything a response tells the client: status line, headers, body (if read)."""
    try:
        body = r.text
    except httpx.ResponseNotRead:
        body = ""
    return f"{r.status_code} {dict(r.headers)} {body}"


@pytest.fixture
def token_http(workspace: Path) -> Iterator[tuple[str, httpx.Client]]:
    with (
        running(workspace, token=TOKEN) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        yield url, http


def test_the_route_walk_finds_every_kind_of_route(workspace: Path) -> None:
    routes = http_routes(workspace)
    assert ("GET", "/") in routes and ("GET", "/api/events") in routes
    assert ("POST", "/api/tasks/create") in routes and ("DELETE", "/api/tasks/nope") in routes
    assert ("GET", "/static/app.js") in routes and websocket_routes(workspace) == ["/ws"]
    assert len(routes) >= 15


def test_every_route_refuses_a_missing_or_wrong_token_without_echoing_it(
    workspace: Path, token_http: tuple[str, httpx.Client]
) -> None:
    _url, http = token_http
    wrong = "wrong-token-canary-0123456789"
    for method, path in http_routes(workspace):
        for headers in (
            {},
            {"Authorization": f"Bearer {wrong}"},
            {"Cookie": f"nexus_token={wrong}"},
        ):
            r = fetch(http, method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert wrong not in said(r) and TOKEN not in said(r)
        r = fetch(http, method, path, params={"token": wrong})
        assert r.status_code == 401 and wrong not in said(r), (method, path)


def test_every_mutating_route_refuses_another_origin_even_with_the_token(
    workspace: Path, token_http: tuple[str, httpx.Client]
) -> None:
    _url, http = token_http
    auth = {"Authorization": f"Bearer {TOKEN}"}
    mutating = [(m, p) for m, p in http_routes(workspace) if m in web_app.MUTATING]
    assert mutating
    for method, path in mutating:
        for origin in (EVIL, "null", "http://127.0.0.1.evil.example"):
            r = fetch(http, method, path, headers={**auth, "Origin": origin})
            assert r.status_code == 403 and "cross-origin" in r.json()["error"], (method, path)


def test_no_route_grants_cross_origin_reads_or_echoes_the_token(
    workspace: Path, token_http: tuple[str, httpx.Client]
) -> None:
    _url, http = token_http
    auth = {"Authorization": f"Bearer {TOKEN}", "Origin": EVIL}
    for method, path in http_routes(workspace):
        r = fetch(http, method, path, headers=auth)
        assert r.status_code != 401, (method, path)
        assert not any(h.startswith("access-control-") for h in r.headers), (method, path)
        assert TOKEN not in said(r), (method, path)
    preflight = http.options(
        "/api/tasks/create",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    # The cookie a browser gets proves the token without being it.
    r = http.get("/", params={"token": TOKEN})
    assert r.status_code == 303 and TOKEN not in said(r)


def test_the_live_feeds_need_the_token_and_the_websocket_its_own_origin(
    workspace: Path, token_http: tuple[str, httpx.Client]
) -> None:
    url, http = token_http
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in websocket_routes(workspace):
        assert path == "/ws"  # `live` connects there
        for kw in ({}, {"additional_headers": {"Authorization": "Bearer wrong-one-123"}}):
            with pytest.raises(InvalidStatus) as refused, live(url, **kw):
                pass
            assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus), live(url, additional_headers=auth, origin=EVIL):
            pass
        with live(url, additional_headers=auth, origin=url):
            pass
    assert fetch(http, "GET", "/api/events").status_code == 401
    streamed = fetch(http, "GET", "/api/events", headers=auth)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")


def test_tokens_are_compared_in_constant_time(
    workspace: Path, token_http: tuple[str, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way a token arrives (header, cookie, `?token=`) goes through
    hmac.compare_digest, never `==` (whose time tells how much of a guess was right)."""
    import hmac

    compared: list[tuple[bytes, bytes]] = []

    class Recorder:
        @staticmethod
        def compare_digest(a: bytes, b: bytes) -> bool:
            compared.append((a, b))
            return hmac.compare_digest(a, b)

    monkeypatch.setattr(web_app, "hmac", Recorder)
    _url, http = token_http
    for kw in (
        {"headers": {"Authorization": "Bearer guess-aaaaaaaa"}},
        {"headers": {"Cookie": "nexus_token=guess-bbbbbbbb"}},
        {"params": {"token": "guess-cccccccc"}},
    ):
        compared.clear()
        assert http.get("/", **kw).status_code == 401  # type: ignore[arg-type]
        guess = next(iter(kw.values()))
        marker = next(iter(guess.values())).split()[-1].split("=")[-1]
        assert any(marker.encode() in a for a, _ in compared), kw


def test_without_a_token_every_route_refuses_a_foreign_host_name(workspace: Path) -> None:
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends its own Host."""
    with (
        running(workspace) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        for method, path in http_routes(workspace):
            r = fetch(http, method, path, headers={"Host": "attacker.example"})
            assert r.status_code == 403, (method, path)
        with (
            pytest.raises(InvalidStatus),
            live(url, additional_headers={"Host": "attacker.example"}),
        ):
            pass


def test_no_web_path_reaches_outside_the_workspace(workspace: Path, tmp_path: Path) -> None:
    """Encoded dot segments, absolute paths, links out of the workspace and into .git/: none
    of them is answered with a file's content."""
    secret = tmp_path / "secret.md"
    secret.write_text(OUTSIDE_SECRET)
    git("config", "remote.origin.url", f"https://x:{OUTSIDE_SECRET}@example.com/r", cwd=workspace)
    pads = workspace / "scratchpads"
    (pads / "leak_to_code.md").symlink_to(secret)
    (pads / "gitcfg_to_code.md").symlink_to(workspace / ".git" / "config")
    (pads / "abs_to_code.md").symlink_to("/etc/passwd")
    hostile = [
        "/api/scratchpads/leak_to_code",
        "/api/scratchpads/gitcfg_to_code",
        "/api/scratchpads/abs_to_code",
        "/api/scratchpads/%2e%2e%2f%2e%2e%2fsecret",
        "/api/scratchpads/..%2F..%2Fsecret",
        "/api/scratchpads/%2Fetc%2Fpasswd",
        "/api/tasks/%2e%2e%2fnexus",
        "/api/tasks/..%2f..%2fsecret",
        "/api/agents/%2e%2e%2f%2e%2e%2fsecret/session",
        "/static/%2e%2e/%2e%2e/secret.md",
        "/static/..%2f..%2f..%2fsecret.md",
        "/static/%2e%2e/app.py",
        "/%2e%2e/%2e%2e/secret.md",
    ]
    with (
        running(workspace) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        for path in hostile:
            r = http.get(path)
            assert r.status_code in (404, 422), (path, r.status_code)
            assert OUTSIDE_SECRET not in r.text and "root:" not in r.text, path
            assert "def create_app" not in r.text, path
        listing = http.get("/api/scratchpads").text
        assert OUTSIDE_SECRET not in listing
