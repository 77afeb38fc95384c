"""`nexus serve`: the REST API, access rules and the live feed, over real HTTP and WebSocket.

Each test starts the real app under uvicorn on 127.0.0.1 (a free port) in a thread, or `nexus
serve` itself as a process.  Token checks are tested with the app's token mode on loopback, and
with `nexus serve --host 127.0.0.2 --token` (a loopback address that still counts as "other":
nothing here listens beyond this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from nexus.service import Service
from nexus.store import Workspace
from nexus.web.app import bind, create_app, make_server
from tests.conftest import git, run_nexus


@contextlib.contextmanager
def running(root: Path, token: str | None = None) -> Iterator[str]:
    """The app served on a free loopback port; yields its base URL."""
    app = create_app(root, token=token, poll=0.2)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture
def base(workspace: Path) -> Iterator[str]:
    with running(workspace) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, trust_env=False, timeout=10) as client:
        yield client


@contextlib.contextmanager
def live(base: str, **kw: Any) -> Iterator[ClientConnection]:
    """A `/ws` connection, past its greeting."""
    with ws_connect(base.replace("http", "ws", 1) + "/ws", proxy=None, open_timeout=5, **kw) as ws:
        assert json.loads(ws.recv(timeout=5))["kind"] == "hello"
        yield ws


def next_event(
    ws: ClientConnection, kind: str, timeout: float = 1.0, **match: Any
) -> dict[str, Any]:
    """The next event of `kind` whose fields have the values in `match`."""
    deadline = time.monotonic() + timeout
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0)))
        if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
            return event


def create(http: httpx.Client, title: str = "Research OAuth2 flows", **fields: Any) -> Any:
    r = http.post("/api/tasks/create", json={"title": title, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def last_commit(ws: Path) -> str:
    return git("log", "-1", "--format=%B", cwd=ws)


# -- tasks ---------------------------------------------------------------------------------------


def test_creating_a_task_writes_its_file_and_commits_it_as_web(
    http: httpx.Client, workspace: Path
) -> None:
    a = create(http, size="S", role="aria", acceptance=["lists the flows"], body="Read RFC 6749.")
    b = create(http, "Implement token endpoint", role="code", deps=[a["id"]], priority="high")
    assert a["status"] == "ready" and b["status"] == "pending" and b["task_id"] == b["id"]
    text = (workspace / b["path"]).read_text()
    assert f"deps: [{a['id']}]" in text and "priority: high" in text
    message = last_commit(workspace)
    assert f"Nexus-Created: {b['id']}" in message and "Nexus-Actor: web" in message


def test_reading_a_task_gives_status_result_progress_and_history(
    http: httpx.Client, workspace: Path
) -> None:
    t = create(http, acceptance=["lists the flows"])
    r = http.post(f"/api/tasks/{t['id']}/move", json={"action": "complete", "result": "3 flows"})
    assert r.status_code == 200 and r.json()["status"] == "complete"
    detail = http.get(f"/api/tasks/{t['id']}").json()
    assert detail["task"]["acceptance"] == ["lists the flows"]
    assert detail["result"] == "3 flows" and detail["why"][0].startswith("complete")
    moves = [(x["from"], x["to"]) for e in detail["history"] for x in e["transitions"]]
    assert ("ready", "complete") in moves and {e["actor"] for e in detail["history"]} == {"web"}
    assert http.get(f"/api/tasks/{t['id']}/status").json() == {
        "task_id": t["id"],
        "title": t["title"],
        "status": "complete",
        "progress": 1.0,
        "why": detail["why"],
    }
    assert http.get(f"/api/tasks/{t['id']}/result").json()["result"] == "3 flows"
    progress = http.get(f"/api/tasks/{t['id']}/progress").json()
    assert progress["status"] == "complete" and progress["running"] is False
    assert progress["daemon"] is False and progress["finished"]


def test_progress_reports_why_a_ready_task_waits_as_the_daemon_sees_it(
    http: httpx.Client, workspace: Path
) -> None:
    t = create(http)
    state = {"pid": os.getpid(), "running": [], "waiting": {t["id"]: "engine busy"}}
    (workspace / ".nexus" / "daemon-state.json").write_text(json.dumps(state))
    progress = http.get(f"/api/tasks/{t['id']}/progress").json()
    assert progress["daemon"] is True and progress["waiting"] == "engine busy"


def test_listing_filters_by_status_role_and_kind(http: httpx.Client) -> None:
    a = create(http, role="aria")
    create(http, "Implement", role="code", deps=[a["id"]])
    listing = http.get("/api/tasks").json()
    assert listing["counts"]["ready"] == 1 and listing["counts"]["pending"] == 1
    assert len(listing["tasks"]) == 2 and listing["name"] == "proj"
    ready = http.get("/api/tasks", params={"status": "ready"}).json()["tasks"]
    assert [t["id"] for t in ready] == [a["id"]]
    both = http.get("/api/tasks?status=ready,pending&kind=task").json()["tasks"]
    assert len(both) == 2
    assert (
        http.get("/api/tasks", params={"role": "code"}).json()["tasks"][0]["title"] == "Implement"
    )


def test_delete_cancels_a_task_and_keeps_its_file_and_history(
    http: httpx.Client, workspace: Path
) -> None:
    t = create(http)
    r = http.delete(f"/api/tasks/{t['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (workspace / t["path"]).exists()
    assert "Nexus-Actor: web" in last_commit(workspace)
    head = git("rev-parse", "HEAD", cwd=workspace)
    assert http.delete(f"/api/tasks/{t['id']}").json()["status"] == "cancelled"  # idempotent
    assert git("rev-parse", "HEAD", cwd=workspace) == head


def test_cancelling_a_complete_task_is_a_409_conflict(http: httpx.Client) -> None:
    t = create(http)
    http.post(f"/api/tasks/{t['id']}/move", json={"action": "complete"})
    r = http.delete(f"/api/tasks/{t['id']}")
    assert r.status_code == 409 and "complete" in r.json()["error"]


def test_moves_fail_and_retry_a_task(http: httpx.Client) -> None:
    t = create(http)
    failed = http.post(f"/api/tasks/{t['id']}/move", json={"action": "fail", "reason": "no net"})
    assert failed.json()["status"] == "failed" and failed.json()["error"] == "no net"
    retried = http.post(f"/api/tasks/{t['id']}/move", json={"action": "retry"}).json()
    assert retried["status"] == "ready" and retried["attempts"] == 0


def test_a_pipeline_is_four_chained_tasks_under_a_milestone(http: httpx.Client) -> None:
    r = http.post("/api/pipeline", json={"description": "a calculator"})
    assert r.status_code == 201
    milestone, *phases = r.json()
    assert milestone["kind"] == "milestone" and [t["role"] for t in phases] == [
        "aria",
        "code",
        "alpha",
        "beta",
    ]
    assert phases[1]["deps"] == [phases[0]["id"]]


# -- agents, messages, scratchpads, log, cost -----------------------------------------------------


def test_agents_status_lists_every_role_with_its_session(http: httpx.Client) -> None:
    agents = http.get("/api/agents/status").json()
    assert {"aria", "code", "alpha", "beta", "prime"} <= agents.keys()
    assert agents["code"]["status"] == "idle" and agents["code"]["current_tasks"] == []
    session = http.get("/api/agents/code/session").json()
    assert session == {
        "role": "code",
        "session_id": None,
        "engine": None,
        "updated": None,
        "replaced": [],
        "current_tasks": [],
        "status": "none",
    }


def test_a_message_to_an_agent_is_appended_to_its_scratchpad_and_committed(
    http: httpx.Client, workspace: Path
) -> None:
    r = http.post("/api/agents/code/message", json={"message": "Use PKCE.", "type": "feedback"})
    assert r.status_code == 201
    sent = r.json()
    assert sent["from"] == "user" and sent["path"] == "scratchpads/user_to_code.md"
    assert "Use PKCE." in (workspace / sent["path"]).read_text()
    assert f"Nexus-Message: {sent['id']}" in last_commit(workspace)
    pads = {p["name"]: p for p in http.get("/api/scratchpads").json()}
    assert (
        pads["user_to_code"]["messages_count"] == 1 and pads["shared_context"]["kind"] == "context"
    )
    pad = http.get("/api/scratchpads/user_to_code").json()
    assert [m["payload"] for m in pad["messages"]] == ["Use PKCE."]


def test_the_log_and_the_cost_come_from_the_journal(http: httpx.Client, workspace: Path) -> None:
    t = create(http, role="code")
    pad = workspace / "scratchpads" / "shared_context.md"
    pad.write_text(pad.read_text() + "\nmore\n")
    git("add", str(pad), cwd=workspace)
    trailers = (
        f"Nexus-Transition: {t['id']} in_progress -> complete\nNexus-Agent: code\n"
        "Nexus-Engine: claude-code\nNexus-Cost-USD: 0.250000\nNexus-Tokens: 1000/200\n"
        "Nexus-Actor: daemon"
    )
    git("commit", "-q", "-m", f"nexus: complete {t['id']}\n\n{trailers}", cwd=workspace)
    log = http.get("/api/log", params={"task": t["id"]}).json()
    assert [e["actor"] for e in log] == ["daemon", "web"]
    assert len(http.get("/api/log", params={"limit": 1}).json()) == 1
    cost = http.get("/api/cost").json()
    assert cost["usd"] == 0.25 and cost["input_tokens"] == 1000 and cost["runs"] == 1
    assert cost["by_role"][0]["key"] == "code" and cost["by_engine"][0]["key"] == "claude-code"
    assert cost["by_day"][0]["by_role"]["code"]["usd"] == 0.25


# -- errors --------------------------------------------------------------------------------------

UNKNOWN = [
    ("GET", "/api/tasks/nope", None),
    ("GET", "/api/tasks/nope/status", None),
    ("GET", "/api/tasks/nope/result", None),
    ("GET", "/api/tasks/nope/progress", None),
    ("DELETE", "/api/tasks/nope", None),
    ("POST", "/api/tasks/nope/move", {"action": "cancel"}),
    ("POST", "/api/agents/nobody/message", {"message": "hi"}),
    ("GET", "/api/agents/nobody/session", None),
    ("GET", "/api/scratchpads/nothing_here", None),
    ("GET", "/api/scratchpads/..%2Fnexus", None),
    ("GET", "/api/no-such-route", None),
]


def test_unknown_ids_are_404_with_a_json_error(http: httpx.Client) -> None:
    for method, path, body in UNKNOWN:
        r = http.request(method, path, json=body)
        assert r.status_code == 404 and r.json()["error"] and "fix" in r.json(), (method, path)


INVALID = [
    ("/api/tasks/create", {}, "title"),
    ("/api/tasks/create", {"title": "  "}, "title"),
    ("/api/tasks/create", {"title": "x", "size": "Q"}, "size"),
    ("/api/tasks/create", {"title": "x", "deps": "a,b"}, "deps"),
    ("/api/tasks/create", {"title": "x", "deps": [1]}, "deps"),
    ("/api/tasks/create", {"title": "x\u0000y"}, "title"),
    ("/api/tasks/create", {"title": "\ud800"}, "title"),
    ("/api/tasks/create", {"title": "x", "colour": "red"}, "colour"),
    ("/api/tasks/create", [], "body"),
    ("/api/tasks/create", "not json", "body"),
    ("/api/pipeline", {"description": 3}, "description"),
    ("/api/agents/code/message", {"message": "hi", "type": "shout"}, "type"),
    ("/api/agents/code/message", {"text": "hi"}, "text"),
]


def test_invalid_bodies_are_422_naming_the_field(http: httpx.Client) -> None:
    for path, body, field in INVALID:
        content = body if isinstance(body, str) else json.dumps(body)
        r = http.post(path, content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (path, body, r.text)
        assert r.json()["field"] == field and field in r.json()["error"], (path, body)


def test_invalid_query_parameters_are_422(http: httpx.Client) -> None:
    assert http.get("/api/tasks", params={"status": "sleeping"}).json()["field"] == "status"
    assert http.get("/api/log", params={"limit": "many"}).status_code == 422
    assert http.get("/api/log", params={"task": "a b"}).json()["field"] == "task"


def test_a_move_task_on_a_missing_task_id_in_the_body_says_what_to_do(http: httpx.Client) -> None:
    t = create(http)
    r = http.post(f"/api/tasks/{t['id']}/move", json={"action": "explode"})
    assert r.status_code == 422 and "complete" in r.json()["fix"]


def test_rules_of_the_workspace_are_400_with_a_fix(http: httpx.Client) -> None:
    r = http.post("/api/tasks/create", json={"title": "x", "deps": ["ghost"]})
    assert r.status_code == 400 and "does not exist" in r.json()["error"] and r.json()["fix"]
    r = http.post("/api/tasks/create", json={"title": "x", "role": "wizard"})
    assert r.status_code == 400 and "agents/wizard.md" in r.json()["error"]
    r = http.post("/api/agents/code/message", json={"message": "hi", "task": "ghost"})
    assert r.status_code == 400


def test_openapi_describes_every_route(http: httpx.Client) -> None:
    from nexus.web.api import ROUTES

    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for r in ROUTES:
        op = doc["paths"][r["path"]][r["method"].lower()]
        assert str(r["ok"]) in op["responses"] and op["summary"]
    create_op = doc["paths"]["/api/tasks/create"]["post"]
    schema = create_op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["title"] and "422" in create_op["responses"]


# -- access --------------------------------------------------------------------------------------


def test_with_a_token_every_route_needs_it(workspace: Path) -> None:
    with (
        running(workspace, token="s3cret-token") as url,
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):
        for path in ("/", "/openapi.json", "/api/tasks", "/api/agents/status", "/static/app.js"):
            r = http.get(path)
            assert r.status_code == 401 and "token" in r.json()["error"], path
        assert http.post("/api/tasks/create", json={"title": "x"}).status_code == 401
        assert http.get("/api/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with pytest.raises(InvalidStatus) as refused, live(url):
            pass
        assert refused.value.response.status_code == 403  # a refused handshake
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert http.get("/api/tasks", headers=bearer).status_code == 200
        with live(url, additional_headers=bearer):
            pass
        # A browser opens /?token= once: an HttpOnly, SameSite=Strict cookie, then the page.
        r = http.get("/", params={"token": "s3cret-token"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret" not in cookie
        assert http.get("/").status_code == 200 and http.get("/api/tasks").status_code == 200


def test_serve_refuses_another_host_without_a_token(workspace: Path) -> None:
    out = run_nexus("serve", "--host", "127.0.0.2", "--port", "0", cwd=workspace, check=False)
    assert out.returncode == 1
    assert "without a token" in out.stderr and "--token" in out.stderr


def test_serve_on_another_host_answers_401_without_the_token(workspace: Path) -> None:
    env = {**os.environ, "NEXUS_TOKEN": "tok-123456"}
    with serve_process(workspace, env, "--host", "127.0.0.2") as url:
        assert url.startswith("http://127.0.0.2:")
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
            r = http.get("/api/tasks")
            assert r.status_code == 401 and r.json()["fix"]
            ok = http.get("/api/tasks", headers={"Authorization": "Bearer tok-123456"})
            assert ok.status_code == 200


@contextlib.contextmanager
def serve_process(ws: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`nexus serve --port 0` as a process; yields the URL it prints."""
    log = ws / ".nexus" / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexus", "serve", "--port", "0", *args],
            cwd=ws,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 15
        while "http://" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "nexus serve printed no URL"
            time.sleep(0.05)
        yield log.read_text().split(" on ")[1].split()[0].rstrip("/")
    finally:
        proc.terminate()  # uvicorn stops gracefully, then lets SIGTERM end the process
        assert proc.wait(10) in (0, -signal.SIGTERM), log.read_text()


def test_a_mutation_from_another_origin_is_403(http: httpx.Client, base: str) -> None:
    evil = {"Origin": "http://evil.example"}
    r = http.post("/api/tasks/create", json={"title": "x"}, headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    assert http.delete("/api/tasks/whatever", headers=evil).status_code == 403
    assert http.get("/api/tasks", headers=evil).status_code == 200  # reads: the browser's CORS
    same = http.post("/api/tasks/create", json={"title": "x"}, headers={"Origin": base})
    assert same.status_code == 201
    with pytest.raises(InvalidStatus) as refused, live(base, origin="http://evil.example"):
        pass
    assert refused.value.response.status_code == 403


def test_without_a_token_only_loopback_host_names_are_answered(http: httpx.Client) -> None:
    # A page on a name that resolves to 127.0.0.1 (DNS rebinding) sends its own Host.
    r = http.get("/api/tasks", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 403 and "host" in r.json()["error"]
    assert http.get("/api/tasks", headers={"Host": "localhost:1234"}).status_code == 200


def test_pages_carry_a_content_security_policy(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200 and "<title>nexus</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert http.get("/static/app.js").status_code == 200


# -- live ----------------------------------------------------------------------------------------


def test_a_task_file_edited_on_disk_reaches_the_websocket_within_a_second(
    workspace: Path,
) -> None:
    task = Service(Workspace(workspace)).add("Research OAuth2 flows")
    path = workspace / task.path
    with running(workspace) as base, live(base) as ws:
        started = time.monotonic()
        path.write_text(path.read_text().replace("status: ready", "status: complete"))
        event = next_event(ws, "changed", timeout=1.0, task=task.id)
        assert time.monotonic() - started < 1.0
    assert (event["from"], event["status"]) == ("ready", "complete")
    assert event["summary"]["status"] == "complete"


def test_the_daemons_events_are_relayed_as_they_are(base: str, workspace: Path) -> None:
    log = workspace / ".nexus" / "events.jsonl"
    line = {"kind": "agent_output", "task": "t1", "time": 1.0, "line": "compiling"}
    with live(base) as ws:
        with open(log, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        assert next_event(ws, "agent_output") == line


def test_a_running_daemons_work_reaches_the_websocket(workspace: Path) -> None:
    steps = [{"result": "done"}]
    task = Service(Workspace(workspace)).add("Say done", engine="script", extra={"script": steps})
    with running(workspace) as base, live(base) as ws:
        run_nexus("watch", "--until-idle", "--quiet", cwd=workspace)
        seen: dict[str, dict[str, Any]] = {}
        while not {"agent_started", "agent_finished", "changed"} <= seen.keys():
            event = json.loads(ws.recv(timeout=3))
            if event["task"] == task.id and event.get("status") != "ready":
                seen[event["kind"]] = event
    assert seen["agent_started"]["engine"] == "script" and seen["agent_finished"]["ok"] is True
    assert seen["changed"]["status"] in ("in_progress", "complete")


def test_the_event_stream_carries_the_same_events_as_sse(base: str, workspace: Path) -> None:
    log = workspace / ".nexus" / "events.jsonl"
    with (
        httpx.Client(base_url=base, trust_env=False, timeout=5) as http,
        http.stream("GET", "/api/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert any(line.startswith("data:") and "hello" in line for line in lines)
        with open(log, "a") as fh:
            fh.write(json.dumps({"kind": "message", "task": None, "time": 2.0}) + "\n")
        data = next(line for line in lines if line.startswith("data:"))
        assert json.loads(data[5:])["kind"] == "message"


def test_stopping_the_server_lets_open_event_streams_go(workspace: Path) -> None:
    with (
        httpx.Client(trust_env=False) as http,
        contextlib.ExitStack() as clients,
    ):
        with running(workspace) as url:
            clients.enter_context(http.stream("GET", f"{url}/api/events"))
            clients.enter_context(live(url))
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 2  # it did not wait for the clients to leave


def test_a_slow_client_loses_its_oldest_events_and_is_told_how_many() -> None:
    from nexus.web.live import Feed

    async def scenario() -> list[dict[str, Any]]:
        feed = Feed(queue_size=3)
        feed.loop = asyncio.get_running_loop()
        sub = feed.subscribe()
        for i in range(5):
            feed.publish({"kind": "progress", "n": i})
        await asyncio.sleep(0.01)  # the thread-safe hand-over runs on the loop
        got = [await sub.get() for _ in range(4)]
        feed.close()
        assert await sub.get() is None
        return [e for e in got if e is not None]

    events = asyncio.run(scenario())
    assert events[0]["kind"] == "dropped" and events[0]["count"] == 2
    assert [e["n"] for e in events[1:]] == [2, 3, 4]


# -- properties ----------------------------------------------------------------------------------


# More examples for a deeper run: NEXUS_API_EXAMPLES=200 pytest tests/test_web_api.py -k generated
EXAMPLES = int(os.environ.get("NEXUS_API_EXAMPLES", "8"))


def test_generated_requests_from_the_openapi_schema_never_get_a_500(
    base: str, http: httpx.Client
) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    checks = (
        not_a_server_error,
        status_code_conformance,
        response_schema_conformance,
        negative_data_rejection,
    )
    # Random ids only ever meet 404s: a third of the cases use ids that exist.
    task_id = create(http, role="code", acceptance=["works"], body="Body.")["id"]
    budget = time.monotonic() + 4 * EXAMPLES  # seconds: a hang fails the test, not CI
    for result in schema.get_all_operations():
        operation = result.ok()
        path = operation.path
        known = (
            {"id": "code"}
            if path.startswith("/api/agents/{id}")
            else {"id": task_id}
            if "{id}" in path
            else {"name": "shared_context"}
            if "{name}" in path
            else {}
        )
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base, checks=checks)

        check()
        assert time.monotonic() < budget, "the property run took too long"
