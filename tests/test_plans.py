"""The plan schema, pure: tolerant extraction, validation that names the key and field of every
problem, change lists, reviews, and the plan file's text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nexus import plans
from nexus.task import Size, Status, Task

ROLES = ("aria", "code", "alpha", "beta")
PLAN_YAML = """goal: Ship login
tasks:
  - key: spec
    title: Specify the login flow
    size: M
    role: aria
    acceptance: [docs/auth.md lists the endpoints]
    body: |
      Read src/users/ and write docs/auth.md.

      ```python
      example()
      ```
  - key: login
    title: Implement POST /login
    size: M
    role: code
    deps: [spec]
"""


def existing(**statuses: str) -> dict[str, Task]:
    return {tid: Task(tid, f"Task {tid}", f"tasks/{tid}.md", status=Status(s))
            for tid, s in statuses.items()}  # fmt: skip


def task(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "title": f"Do {key}", "size": "S", "role": "code", **fields}


def problems_of(data: dict[str, Any], tasks: dict[str, Task] | None = None, **kw: Any) -> list[str]:
    _, found = plans.check_plan(data, roles=ROLES, tasks=tasks or {}, **kw)
    return [str(p) for p in found]


def only_problem(data: dict[str, Any], **kw: Any) -> plans.Problem:
    _, found = plans.check_plan(data, roles=ROLES, tasks=kw.pop("tasks", {}), **kw)
    assert len(found) == 1, found
    return found[0]


# -- extraction --------------------------------------------------------------------------------


def test_a_fenced_yaml_block_inside_prose_is_found_even_with_code_fences_in_a_body() -> None:
    answer = f"Sure! Here is the plan.\n\n```yaml\n{PLAN_YAML}```\n\nLet me know if it helps."
    data = plans.extract(answer)
    assert [t["key"] for t in data["tasks"]] == ["spec", "login"]
    assert "```python" in data["tasks"][0]["body"]


def test_a_fenced_json_block_and_a_bare_json_object_in_prose_are_found() -> None:
    obj = {"goal": "g", "tasks": [task("a")]}
    assert plans.extract(f"```json\n{json.dumps(obj)}\n```") == obj
    assert plans.extract(f"The plan is {json.dumps(obj)} — enjoy.") == obj


def test_unfenced_yaml_after_a_line_of_prose_is_found() -> None:
    data = plans.extract(f"Here you go:\n{PLAN_YAML}\nThat is all.")
    assert data["goal"] == "Ship login" and len(data["tasks"]) == 2


def test_a_wrapping_plan_key_is_unwrapped() -> None:
    assert plans.extract("plan:\n  goal: g\n  tasks: []\n") == {"goal": "g", "tasks": []}


def test_an_answer_without_a_mapping_is_rejected_with_the_fix() -> None:
    with pytest.raises(plans.Rejected) as caught:
        plans.extract("I cannot help with that.")
    assert "no YAML or JSON mapping" in str(caught.value) and "```yaml" in str(caught.value)


def test_a_broken_fenced_block_names_its_line() -> None:
    with pytest.raises(plans.Rejected, match="not valid YAML on line 3"):
        plans.extract("```yaml\ngoal: g\ntasks: [\n```")


# -- validation --------------------------------------------------------------------------------


def test_a_valid_plan_gets_defaults_and_keeps_its_order() -> None:
    plan = plans.validated(plans.extract(PLAN_YAML), roles=ROLES, tasks={})
    spec, login = plan.tasks
    assert (spec.kind, spec.size, spec.role, spec.deps) == ("task", "M", "aria", ())
    assert login.deps == ("spec",) and spec.acceptance == ("docs/auth.md lists the endpoints",)


def test_a_cycle_is_reported_with_its_path() -> None:
    data = {"goal": "g", "tasks": [task("a", deps=["c"]), task("b", deps=["a"]),
                                   task("c", deps=["b"])]}  # fmt: skip
    problem = only_problem(data)
    assert (problem.key, problem.field) == ("a", "deps")
    assert "a → c → b → a" in problem.message


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"role": "wizard"}, "role", "unknown role 'wizard'; use one of: alpha, aria, beta, code"),
        ({"deps": ["nope"]}, "deps", "'nope' is neither a key of this plan nor the id"),
        ({"size": "XXL"}, "size", "'XXL' is not one of S | M | L | XL"),
        ({"kind": "epic"}, "kind", "'epic' is not one of milestone | task | subtask"),
        ({"title": "two\nlines"}, "title", "must be one line"),
        ({"priority": "urgent"}, "priority", "'urgent'"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"deps": ["a"]}, "deps", "cannot depend on itself"),
    ],
)
def test_each_bad_field_names_the_key_and_the_field(
    fields: dict[str, Any], field: str, words: str
) -> None:
    problem = only_problem({"goal": "g", "tasks": [task("a", **fields)]})
    assert (problem.key, problem.field) == ("a", field)
    assert words in problem.message
    assert str(problem).startswith(f"task 'a' (field {field}):")


@pytest.mark.parametrize("key", ["../escape", "a/b", "/etc/passwd", "two\nlines", "Upper", ""])
def test_hostile_or_malformed_keys_are_rejected(key: str) -> None:
    problem = only_problem({"goal": "g", "tasks": [task(key, title="Hostile")]})
    assert problem.field == "key" and problem.key == "#1"
    assert "not a valid key" in problem.message or "missing" in problem.message


def test_a_duplicate_key_and_a_key_that_is_an_existing_id_are_rejected() -> None:
    data = {"goal": "g", "tasks": [task("a"), task("a"), task("old1")]}
    found = problems_of(data, existing(old1="complete"))
    assert found == [
        "task 'a' (field key): is used by more than one task",
        "task 'old1' (field key): is also the id of an existing task; choose another key",
    ]


def test_more_than_ten_thousand_tasks_is_one_clear_error() -> None:
    data = {"goal": "g", "tasks": [task(f"t{i}") for i in range(10_001)]}
    problem = only_problem(data)
    assert (problem.key, problem.field) == (None, "tasks")
    assert "10,001 tasks; a plan holds at most 10,000" in problem.message


def test_every_problem_is_reported_at_once() -> None:
    data = {"tasks": [task("a", size="huge", role="nobody"), task("b", deps=["zz"])]}
    found = problems_of(data)
    assert len(found) == 4 and found[0] == "the plan (field goal): is missing"
    with pytest.raises(plans.Rejected) as caught:
        plans.validated(data, roles=ROLES, tasks={})
    assert "the plan has 4 problems" in str(caught.value)
    assert len(caught.value.problems) == 4


def test_deps_may_name_existing_tasks_but_not_cancelled_ones() -> None:
    tasks = existing(done1="complete", gone1="cancelled")
    assert problems_of({"goal": "g", "tasks": [task("a", deps=["done1"])]}, tasks) == []
    found = problems_of({"goal": "g", "tasks": [task("a", deps=["gone1"])]}, tasks)
    assert found == ["task 'a' (field deps): depends on gone1, which is cancelled: it would "
                     "never start"]  # fmt: skip


def test_hierarchy_loops_and_deadlocks_are_rejected() -> None:
    loop = {"goal": "g", "tasks": [task("a", parent="b"), task("b", parent="a")]}
    assert {p.split(" (")[0] for p in problems_of(loop)} == {"task 'a'", "task 'b'"}
    up = {"goal": "g", "tasks": [task("m", kind="milestone"), task("a", parent="m", deps=["m"])]}
    assert problems_of(up) == ["task 'a' (field deps): depends on 'm', its own parent (a deadlock)"]
    down = {"goal": "g", "tasks": [task("m", deps=["a"]), task("a", parent="m")]}
    assert problems_of(down) == ["task 'm' (field deps): depends on 'a', one of its own parts"]


def test_the_parts_of_a_decomposed_task_may_not_wait_for_it() -> None:
    tasks = {"xl1": Task("xl1", "Big", "tasks/xl1.md", size=Size.XL, status=Status.READY)}
    found = problems_of({"goal": "g", "tasks": [task("a", deps=["xl1"])]}, tasks, parent="xl1")
    assert len(found) == 1 and "contains this plan" in found[0]
    assert problems_of({"goal": "g", "tasks": [task("a")]}, tasks, parent="nope1") == [
        "the plan (field parent): task nope1 does not exist"
    ]


def test_creation_order_puts_deps_and_parents_first() -> None:
    data = {"goal": "g", "tasks": [task("c", deps=["b"], parent="m"), task("b"),
                                   task("m", kind="milestone")]}  # fmt: skip
    plan = plans.validated(data, roles=ROLES, tasks={})
    assert [t.key for t in plans.creation_order(plan.tasks)] == ["b", "m", "c"]


# -- change lists ------------------------------------------------------------------------------


def test_a_change_list_is_checked_against_the_live_tasks() -> None:
    tasks = existing(p1="pending", r1="ready", c1="complete", run1="in_progress")
    data = {
        "kind": "adapt",
        "changes": [
            {"op": "add", **task("fix", deps=["r1"])},
            {"op": "cancel", "id": "run1", "reason": "superseded"},
            {"op": "resize", "id": "p1", "size": "L"},
            {"op": "rewire", "id": "p1", "deps": ["fix"]},
            {"op": "edit", "id": "r1", "acceptance": ["it works"]},
        ],
    }
    plan = plans.validated(data, roles=ROLES, tasks=tasks)
    assert [c.op for c in plan.changes] == ["add", "cancel", "resize", "rewire", "edit"]
    assert plans.describe_changes(plan, tasks) == [
        "+ fix  [S code]  Do fix  ← r1",
        "- run1 (Task run1): superseded",
        "~ p1 (Task p1): size M → L",
        "~ p1 (Task p1): deps [none] → [fix]",
        "~ r1 (Task r1): acceptance → ['it works']",
    ]


def test_bad_changes_name_the_task_and_the_field() -> None:
    tasks = existing(p1="pending", c1="complete", run1="in_progress", q1="pending")
    tasks["q1"] = Task("q1", "Q", "tasks/q1.md", deps=("p1",))
    data = {
        "changes": [
            {"op": "resize", "id": "c1", "size": "L"},
            {"op": "edit", "id": "run1", "title": "x"},
            {"op": "rewire", "id": "p1", "deps": ["q1"]},
            {"op": "explode", "id": "p1"},
            {"op": "cancel", "id": "missing"},
            {"op": "resize", "id": "q1", "size": "L", "why": "bigger"},
        ]
    }
    _, found = plans.check_plan(data, roles=ROLES, tasks=tasks)
    text = [str(p) for p in found]
    assert "task 'c1' (field op): resize: the task is complete; leave it alone" in text
    assert any(t.startswith("task 'run1' (field op): edit: the task is in_progress") for t in text)
    assert (
        "entry #4 (field op): 'explode' is not one of add | cancel | resize | rewire | edit" in text
    )
    assert "entry #5 (field id): cancel: no task has the id 'missing'" in text
    assert any(t.startswith("task 'q1' (field why): is not a field of resize") for t in text)
    assert any("dependency cycle: p1 → q1 → p1" in t for t in text)


# -- reviews -----------------------------------------------------------------------------------


def test_a_review_verdict_is_parsed_and_a_reopen_needs_reasons() -> None:
    answer = """```yaml
verdict: reopen
reasons: [the 401 case is missing]
criteria:
  - {criterion: returns 401, met: false, evidence: no test}
```"""
    review = plans.check_review(plans.extract(answer), "t1")
    assert review.verdict == "reopen" and review.criteria[0].met is False
    section = plans.review_section(review, "2025-01-01T00:00:00Z")
    assert "- [ ] returns 401 — no test" in section and "Verdict: reopen" in section
    with pytest.raises(plans.Rejected, match="field reasons"):
        plans.check_review({"verdict": "reopen"}, "t1")
    with pytest.raises(plans.Rejected, match="field verdict"):
        plans.check_review({"verdict": "maybe", "reasons": ["x"]}, "t1")


# -- files -------------------------------------------------------------------------------------


def test_a_rendered_plan_reads_back_and_approval_is_appended() -> None:
    plan = plans.validated(plans.extract(PLAN_YAML), roles=ROLES, tasks={})
    text = plans.render(plan, "ship-login-abcd", {"created": "2025-01-01T00:00:00Z"})
    assert text.startswith("# A nexus plan") and "nexus approve ship-login-abcd" in text
    again = plans.validated(plans.read_file(text), roles=ROLES, tasks={})
    assert again.tasks == plan.tasks
    assert plans.header(text) == (None, False, "2025-01-01T00:00:00Z")
    done = plans.mark_approved(text, "2025-01-02T00:00:00Z", {"spec": "id1", "login": "id2"})
    assert done.startswith(text)
    data = plans.read_file(done)
    assert data["approved"] == "2025-01-02T00:00:00Z" and data["task_ids"]["login"] == "id2"
    assert plans.header(done)[1] is True


def test_a_task_description_leaves_out_what_nexus_appended() -> None:
    body = "Do it well.\n\n## Result\n\ndone\n\n## Review\n\nok\n"
    assert plans.description(body) == "Do it well.\n\n"
    assert plans.replace_description(body, "Do it better.") == (
        "Do it better.\n\n## Result\n\ndone\n\n## Review\n\nok\n"
    )
