"""The lifecycle table, the DAG and promotion: pure, fast, exhaustive."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
from pathlib import Path

import pytest

from nexus import dag, journal
from nexus.changes import Batch
from nexus.errors import TransitionError
from nexus.promote import RetryPolicy, promote
from nexus.store import Workspace
from nexus.task import TRANSITIONS, Status, Task, can_transition

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
S = Status


def T(tid: str, **kw: object) -> Task:
    return Task(id=tid, title=f"task {tid}", path=f"tasks/{tid}.md", **kw)  # type: ignore[arg-type]


def tasks(*items: Task) -> dict[str, Task]:
    return {t.id: t for t in items}


ALLOWED = {
    (S.PENDING, S.READY),
    (S.PENDING, S.CANCELLED),
    (S.READY, S.ASSIGNED),
    (S.READY, S.PENDING),
    (S.READY, S.CANCELLED),
    (S.READY, S.COMPLETE),
    (S.READY, S.FAILED),
    (S.ASSIGNED, S.IN_PROGRESS),
    (S.ASSIGNED, S.READY),
    (S.ASSIGNED, S.CANCELLED),
    (S.ASSIGNED, S.FAILED),
    (S.ASSIGNED, S.COMPLETE),
    (S.IN_PROGRESS, S.COMPLETE),
    (S.IN_PROGRESS, S.FAILED),
    (S.IN_PROGRESS, S.READY),
    (S.IN_PROGRESS, S.CANCELLED),
    (S.FAILED, S.PENDING),
    (S.FAILED, S.CANCELLED),
    (S.COMPLETE, S.PENDING),
    (S.CANCELLED, S.PENDING),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(Status, Status)))
def test_every_pair_of_statuses_is_allowed_or_refused_by_the_table(
    src: Status, dst: Status
) -> None:
    assert can_transition(src, dst) == ((src, dst) in ALLOWED)


def test_the_table_has_no_self_loops_and_terminal_states_only_reopen() -> None:
    assert all(s not in TRANSITIONS[s] for s in Status)
    assert TRANSITIONS[S.COMPLETE] == {S.PENDING}
    assert TRANSITIONS[S.CANCELLED] == {S.PENDING}


@pytest.mark.parametrize(
    ("src", "dst"),
    sorted(set(itertools.product(Status, Status)) - ALLOWED - {(s, s) for s in Status}),
)
def test_a_batch_refuses_moves_outside_the_table(src: Status, dst: Status, tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.md").write_text(f"---\ntitle: A\nstatus: {src}\n---\n")
    batch = Batch(Workspace(tmp_path), tasks(T("a", status=Status.PENDING)), NOW)
    with pytest.raises(TransitionError) as info:
        batch.move("a", dst, "test")  # the file's status counts, not the stale snapshot's
    assert f"cannot go from {src} to {dst}" in str(info.value)
    assert info.value.fix


def test_dependent_becomes_ready_when_last_dep_completes() -> None:
    ts = tasks(T("a", status=S.COMPLETE), T("b", status=S.IN_PROGRESS), T("c", deps=("a", "b")))
    assert promote(ts, NOW) == []
    ts["b"] = T("b", status=S.COMPLETE)
    [t] = promote(ts, NOW)
    assert (t.task_id, t.src, t.dst, t.reason) == ("c", S.PENDING, S.READY, "all 2 deps complete")


def test_diamond_promotes_the_join_only_after_both_sides() -> None:
    ts = tasks(
        T("top", status=S.COMPLETE),
        T("left", deps=("top",)),
        T("right", deps=("top",)),
        T("join", deps=("left", "right")),
    )
    assert {t.task_id for t in promote(ts, NOW)} == {"left", "right"}
    ts.update(
        left=T("left", status=S.COMPLETE, deps=("top",)),
        right=T("right", status=S.READY, deps=("top",)),
    )
    assert promote(ts, NOW) == []
    ts["right"] = T("right", status=S.COMPLETE, deps=("top",))
    assert [(t.task_id, t.dst) for t in promote(ts, NOW)] == [("join", S.READY)]


def test_a_long_chain_promotes_one_link_at_a_time() -> None:
    n = 50
    ts = tasks(*(T(f"t{i}", deps=(f"t{i - 1}",) if i else ()) for i in range(n)))
    assert dag.topological_order(ts) == [f"t{i}" for i in range(n)]
    for i in range(n):
        moves = promote(ts, NOW)
        assert [(t.task_id, t.dst) for t in moves] == [(f"t{i}", S.READY)]
        ts[f"t{i}"] = T(f"t{i}", status=S.COMPLETE, deps=ts[f"t{i}"].deps)
    assert promote(ts, NOW) == []


def test_promotion_of_a_10000_task_chain_is_linear() -> None:
    n = 10_000
    ts = tasks(*(T(f"t{i}", status=S.COMPLETE, deps=(f"t{i - 1}",) if i else ()) for i in range(n)))
    ts["last"] = T("last", deps=(f"t{n - 1}",))
    assert [t.task_id for t in promote(ts, NOW)] == ["last"]
    assert dag.find_cycles(ts) == []


def test_a_ready_task_goes_back_to_pending_when_a_dep_reopens() -> None:
    ts = tasks(T("a", status=S.PENDING), T("b", status=S.READY, deps=("a",)))
    moves = [t for t in promote(ts, NOW) if t.task_id == "b"]
    assert moves[0].dst is S.PENDING
    assert "dep a is" in moves[0].reason


def test_children_wait_for_their_parents_deps() -> None:
    ts = tasks(T("m1"), T("m2", deps=("m1",)), T("k", parent="m2"))
    moved = {t.task_id for t in promote(ts, NOW)}
    assert "k" not in moved and "m1" in moved
    assert dag.blockers(ts["k"], ts) == [("m1", "m2", S.PENDING)]


def test_a_container_completes_when_its_children_do() -> None:
    ts = tasks(
        T("m", status=S.READY),
        T("k1", parent="m", status=S.COMPLETE),
        T("k2", parent="m", status=S.CANCELLED),
    )
    [t] = promote(ts, NOW)
    assert (t.task_id, t.dst, t.reason) == ("m", S.COMPLETE, "all 2 children complete")


def test_failed_task_is_retried_after_backoff_while_retries_remain() -> None:
    failed = T("f", status=S.FAILED, attempts=1, finished="2026-11-22T11:59:58Z", error="boom")
    policy = RetryPolicy(max_retries=2, backoff=5)
    assert promote(tasks(failed), NOW, policy) == []  # 2 s after failing: backoff not over
    later = NOW + dt.timedelta(seconds=4)
    moves = promote(tasks(failed), later, policy)
    assert next((t.dst, t.reason) for t in moves) == (S.PENDING, "retry 1 of 2 after: boom")
    spent = T("f", status=S.FAILED, attempts=3, finished="2026-11-22T00:00:00Z")
    assert promote(tasks(spent), later, policy) == []


def test_cycles_are_reported_with_their_path() -> None:
    ts = tasks(T("a", deps=("c",)), T("b", deps=("a",)), T("c", deps=("b",)), T("d", deps=("a",)))
    assert dag.find_cycles(ts) == [["a", "c", "b", "a"]]
    msgs = {p.message for p in dag.problems(ts)}
    assert msgs == {"dependency cycle: a → c → b → a"}
    assert promote(ts, NOW) == []


def test_cycles_are_found_behind_chains_and_among_their_dependents() -> None:
    # Tasks that only depend on a cycle (e, f) or sit on a plain chain (p, q) are not part of
    # it; two separate cycles are both reported, with a self-dep left to `problems`.
    ts = tasks(
        T("p"),
        T("q", deps=("p",)),
        T("a", deps=("b", "q")),
        T("b", deps=("a",)),
        T("e", deps=("a",)),
        T("f", deps=("e", "y")),
        T("x", deps=("y",)),
        T("y", deps=("x",)),
        T("s", deps=("s",)),
    )
    assert sorted(dag.find_cycles(ts)) == [["a", "b", "a"], ["x", "y", "x"]]


def test_missing_self_and_cancelled_deps_are_reported() -> None:
    ts = tasks(
        T("a", deps=("a",)),
        T("b", deps=("ghost",)),
        T("x", status=S.CANCELLED),
        T("c", deps=("x",)),
    )
    found = {(p.task_id, p.severity, p.message) for p in dag.problems(ts)}
    assert ("a", "error", "task a depends on itself") in found
    assert ("b", "error", "task b depends on ghost, which does not exist") in found
    assert any(tid == "c" and sev == "warning" and "cancelled" in m for tid, sev, m in found)
    assert {t.task_id for t in promote(ts, NOW)} == set()


def test_commit_messages_carry_trailers_that_git_parses() -> None:
    from nexus.task import Transition

    change = journal.Change(
        "complete a (Research)",
        "daemon",
        [
            Transition("a", S.IN_PROGRESS, S.COMPLETE, "engine succeeded"),
            Transition("b", S.PENDING, S.READY, "all 1 deps complete"),
        ],
        facts={"Agent": "aria", "Engine": "script", "Cost-USD": "0.0125", "Tokens": "10/20"},
    )
    msg = journal.message(change)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=msg,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parsed.splitlines() == [
        "Nexus-Transition: a in_progress -> complete",
        "Nexus-Transition: b pending -> ready",
        "Nexus-Agent: aria",
        "Nexus-Engine: script",
        "Nexus-Cost-USD: 0.0125",
        "Nexus-Tokens: 10/20",
        "Nexus-Actor: daemon",
    ]
