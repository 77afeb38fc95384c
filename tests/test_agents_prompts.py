"""Roles, routing, prompt assembly and persistent sessions: pure functions plus tmp_path files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from nexus import agents, prompts, sessions
from nexus.agents import Role, SessionMode
from nexus.config import Config, from_mapping
from nexus.errors import NexusError
from nexus.resources import prompts_dir, template_dir
from nexus.task import Size, Task

# -- roles -------------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace folder holding the shipped agents/ and scratchpads/."""
    for folder in ("agents", "scratchpads"):
        shutil.copytree(template_dir() / folder, tmp_path / folder)
    return tmp_path


def test_the_template_ships_five_roles_four_of_them_persistent() -> None:
    roles, problems = agents.load_roles(template_dir(), Config())
    assert problems == []
    assert sorted(roles) == ["alpha", "aria", "beta", "code", "prime"]
    persistent = {r.role for r in roles.values() if r.persistent}
    assert persistent == {"aria", "code", "alpha", "beta"}
    assert roles["prime"].session is SessionMode.PER_TASK
    aria = roles["aria"]
    assert (aria.name, aria.title, aria.path) == ("Aria", "Coordinator", "agents/aria.md")
    assert aria.engine is None and aria.model is None
    assert "requirements_engineering" in aria.expertise and "analytical" in aria.traits
    assert aria.persona.startswith("# Aria, the Coordinator")
    assert "task_decomposition" in roles["prime"].expertise


def test_a_broken_role_file_is_reported_with_file_and_field_while_the_others_load(
    ws: Path,
) -> None:
    (ws / "agents" / "code.md").write_text("---\nname: Code\nsession: forever\n---\nI code.\n")
    (ws / "agents" / "alpha.md").write_text("---\nname: [unclosed\n---\nI test.\n")
    roles, problems = agents.load_roles(ws, Config())
    assert sorted(roles) == ["aria", "beta", "prime"]
    session = next(p for p in problems if p.startswith("agents/code.md"))
    assert "(field session)" in session and "'forever'" in session
    assert "persistent" in session and "not loaded" in session
    assert any(p.startswith("agents/alpha.md:3: frontmatter is not valid YAML") for p in problems)


@pytest.mark.parametrize(
    ("frontmatter", "field"),
    [
        ("traits: {a: 1}", "traits"),
        ("settings: [a]", "settings"),
        ("engine: [a, b]", "engine"),
        ("model: {x: 1}", "model"),
    ],
)
def test_bad_role_field_values_name_the_field_and_the_fix(frontmatter: str, field: str) -> None:
    role, problems = agents.parse_role("x", f"---\n{frontmatter}\n---\nbody\n", "agents/x.md")
    assert role is None
    assert f"agents/x.md (field {field})" in problems[-1] and "fix:" in problems[-1]


def test_unknown_role_fields_are_kept_with_a_warning() -> None:
    role, problems = agents.parse_role("x", "---\ncolour: blue\n---\nI am X.\n", "agents/x.md")
    assert role is not None and role.fields["colour"] == "blue"
    assert problems == [
        f"agents/x.md: unknown field 'colour' (kept; known fields: "
        f"{', '.join(agents.KNOWN_FIELDS)})"
    ]


def test_a_role_file_without_frontmatter_is_all_persona_and_per_task() -> None:
    role, problems = agents.parse_role("helper", "You help.\n", "agents/helper.md")
    assert problems == []
    assert role == Role(name="helper", role="helper", persona="You help.", path="agents/helper.md")


def test_a_role_field_naming_another_role_and_an_unknown_engine_are_reported_not_fatal() -> None:
    text = "---\nrole: coder\nengine: warp-drive\n---\nI code.\n"
    role, problems = agents.parse_role("code", text, "agents/code.md", None, ["claude-code"])
    assert role is not None and role.role == "code" and role.engine == "warp-drive"
    assert any("(field role)" in p and "'coder'" in p for p in problems)
    assert any("(field engine)" in p and "claude-code" in p for p in problems)


def test_nexus_yaml_roles_override_the_file_and_merge_settings(ws: Path) -> None:
    (ws / "agents" / "code.md").write_text(
        "---\nname: Code\nsession: persistent\nmodel: opus\nsettings: {a: 1, b: 1}\n---\nI code.\n"
    )
    config = from_mapping(
        {"roles": {"code": {"engine": "codex", "session": "per-task", "settings": {"b": 2}}}}
    )
    roles, problems = agents.load_roles(ws, config)
    code = roles["code"]
    assert (code.engine, code.model, code.session) == ("codex", "opus", SessionMode.PER_TASK)
    assert code.settings == {"a": 1, "b": 2}
    assert problems == []


def test_a_bad_value_from_nexus_yaml_is_reported_against_nexus_yaml(ws: Path) -> None:
    config = from_mapping({"roles": {"beta": {"session": "sometimes"}, "ghost": {"model": "x"}}})
    roles, problems = agents.load_roles(ws, config)
    assert "beta" not in roles and "aria" in roles
    assert any(p.startswith("nexus.yaml roles.beta (field session)") for p in problems)
    assert any(p.startswith("nexus.yaml roles.ghost") and "agents/ghost.md" in p for p in problems)


@pytest.mark.parametrize("name", ["a b", ".hidden", "-dash", "dot.ted", "x" * 70])
def test_hostile_role_file_names_are_refused(ws: Path, name: str) -> None:
    (ws / "agents" / f"{name}.md").write_text("---\nname: Evil\n---\nboo\n")
    roles, problems = agents.load_roles(ws, Config())
    assert name not in roles and len(roles) == 5
    assert any(p.startswith(f"agents/{name}.md") and "not a valid role name" in p for p in problems)


def test_a_role_file_linking_outside_the_workspace_is_not_read(ws: Path, tmp_path: Path) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret.md"
    secret.write_text("---\nname: S\n---\ntop secret\n")
    (ws / "agents" / "leak.md").symlink_to(secret)
    roles, problems = agents.load_roles(ws, Config())
    assert "leak" not in roles
    assert any(p.startswith("agents/leak.md") and "outside the workspace" in p for p in problems)


def test_an_unreadable_role_file_and_an_empty_persona_are_reported(ws: Path) -> None:
    (ws / "agents" / "bin.md").write_bytes(b"---\nname: \xff\n---\n")
    (ws / "agents" / "mute.md").write_text("---\nname: Mute\n---\n")
    roles, problems = agents.load_roles(ws, Config())
    assert "bin" not in roles and "mute" in roles
    assert any(p.startswith("agents/bin.md: cannot be read") for p in problems)
    assert any(p.startswith("agents/mute.md") and "no persona" in p for p in problems)


def test_sessions_yaml_beside_the_roles_is_not_a_role(ws: Path) -> None:
    (ws / "agents" / "sessions.yaml").write_text("code: {engine: claude-code, session: s1}\n")
    roles, problems = agents.load_roles(ws, Config())
    assert len(roles) == 5 and problems == []


# -- routing -----------------------------------------------------------------------------------

CONFIG = from_mapping(
    {
        "engines": {
            "default": "claude-code",
            "claude-code": {"permission_mode": "acceptEdits", "max_parallel": 4},
            "codex": {"sandbox": "workspace-write"},
        },
        "routing": {
            "claude-code": {"S": "haiku", "M": "sonnet", "L": "opus"},
            "codex": {"M": "gpt-5"},
        },
    }
)


def task(**kw: Any) -> Task:
    fields = kw.pop("fields", {})
    return Task(id="t1", title="T", path="tasks/t/t1.md", fields=fields, **kw)


def role(**kw: Any) -> Role:
    return Role(name="Code", role="code", **kw)


# The precedence table: (task, role, --engine flag) → (engine, model, words of the reason).
# fmt: off
ROUTES = [
    # engine: built-in default, then routing by size
    (task(), None, None, "claude-code", "sonnet", "size M → sonnet (routing.claude-code)"),
    (task(size=Size.S), None, None, "claude-code", "haiku", "size S → haiku"),
    (task(size=Size.L), None, None, "claude-code", "opus", "size L → opus"),
    # XL is routed like any other size (dispatch refuses it)
    (task(size=Size.XL), None, None, "claude-code", None, "no routing.claude-code.XL"),
    # role engine beats the default; the flag beats everything
    (task(), role(engine="codex"), None, "codex", "gpt-5", "engine codex from role code"),
    (task(engine="codex"), role(engine="anthropic"), None, "codex", "gpt-5", "from the task"),
    (task(engine="codex"), None, "script", "script", None, "engine script from --engine"),
    # model: task > role > routing
    (task(model="m-task"), role(model="m-role"), None, "claude-code", "m-task", "the task"),
    (task(), role(model="m-role"), None, "claude-code", "m-role", "model m-role from role"),
    # a role's model only counts on the role's own engine
    (task(engine="codex"), role(engine="claude-code", model="opus"), None, "codex", "gpt-5",
     "routing.codex"),
    (task(), role(engine="codex", model="o3"), "claude-code", "claude-code", "sonnet",
     "routing.claude-code"),
    (task(engine="codex"), role(model="any"), None, "codex", "any", "from role code"),
    # a task's model named for its own engine is not sent to the --engine override
    (task(engine="codex", model="gpt-5-pro"), None, "claude-code", "claude-code", "sonnet",
     "routing.claude-code"),
    # an engine without routing uses its own default model
    (task(size=Size.S), role(engine="codex"), None, "codex", None, "codex's default model"),
]
# fmt: on


@pytest.mark.parametrize(("the_task", "the_role", "flag", "engine", "model", "reason"), ROUTES)
def test_routing_precedence(
    the_task: Task,
    the_role: Role | None,
    flag: str | None,
    engine: str,
    model: str | None,
    reason: str,
) -> None:
    r = agents.route(the_task, the_role, CONFIG, flag)
    assert (r.engine, r.model) == (engine, model)
    assert reason in r.reason


def test_the_default_engine_comes_from_nexus_yaml_and_says_so() -> None:
    r = agents.route(task(), None, from_mapping({"engines": {"default": "codex"}}))
    assert r.engine == "codex" and "(engines.default)" in r.reason
    assert "built-in default" in agents.route(task(), None, Config()).reason


def test_settings_merge_engine_then_role_then_task_key_by_key() -> None:
    the_role = role(settings={"permission_mode": "plan", "effort": "high"})
    the_task = task(fields={"engine_settings": {"effort": "low", "extra": True}})
    r = agents.route(the_task, the_role, CONFIG)
    assert r.settings == {
        "permission_mode": "plan",
        "max_parallel": 4,
        "effort": "low",
        "extra": True,
    }
    assert agents.route(task(), None, CONFIG, "codex").settings == {"sandbox": "workspace-write"}


def test_task_engine_settings_that_are_not_a_mapping_are_ignored_with_a_reason() -> None:
    r = agents.route(task(fields={"engine_settings": "fast"}), None, CONFIG)
    assert r.settings == CONFIG.engine_settings("claude-code")
    assert "engine_settings is not a mapping" in r.reason


def test_route_does_not_change_the_config_settings() -> None:
    agents.route(task(fields={"engine_settings": {"x": 1}}), None, CONFIG)
    assert "x" not in CONFIG.engines["claude-code"]


# -- prompts -----------------------------------------------------------------------------------

TEMPLATE = (prompts_dir() / "task.md").read_text()
SHARED = (template_dir() / "scratchpads" / "shared_context.md").read_text()
FEEDBACK = (template_dir() / "scratchpads" / "orchestrator_feedback.md").read_text()
PERSONA = "# Tess\n\nYou are Tess, who tests things."


def build(template: str = TEMPLATE, **kw: Any) -> str:
    args: dict[str, Any] = {
        "role": Role(name="Tess", role="tess", persona=PERSONA),
        "task": Task(
            id="t7",
            title="Write the login tests",
            path="tasks/t/t7.md",
            role="tess",
            acceptance=("pytest passes", "a wrong password\ngets 401"),
        ),
        "body": "Cover POST /login.",
        "context_files": [],
        "dependency_results": [],
        "inbox": [],
        "inbox_left_out": 0,
        "shared_context": SHARED.replace("{{goal}}", ""),
        "orchestrator_feedback": FEEDBACK,
        "workspace": "/ws",
        "workdir": "/repo",
        "roles": ["aria", "code", "tess"],
    }
    args.update(kw)
    return prompts.task_prompt(template, **args)


def test_the_task_prompt_holds_persona_title_criteria_results_and_messages() -> None:
    text = build(
        context_files=["src/login.py", "docs/auth.md"],
        dependency_results=[("t5", "Implement login", "Added src/login.py.")],
        inbox=[("code", "response", "2025-01-02T10:00:00Z", "Login is ready.")],
        shared_context="# Shared context\n\nWe use pytest.\n",
        orchestrator_feedback="# Orchestrator feedback\n\nNo network in tests.\n",
    )
    assert text.startswith(PERSONA)
    assert "# Task t7: Write the login tests" in text and "Cover POST /login." in text
    assert "## Acceptance criteria\n\n- pytest passes\n- a wrong password\n  gets 401" in text
    assert "## Files to read first" in text and "relative to the working directory" in text
    assert "- `src/login.py`\n- `docs/auth.md`" in text
    assert "## Results of the tasks this one depends on\n\n### t5 — Implement login" in text
    assert "Added src/login.py." in text
    message = "### code · response · 2025-01-02T10:00:00Z\n\nLogin is ready."
    assert f"## Messages for you\n\n{message}" in text
    assert "## Shared context\n\nWe use pytest." in text
    assert "## Orchestrator feedback\n\nNo network in tests." in text
    assert "You are working as `tess`" in text and "`<to>` is one of: aria, code." in text
    assert "\n\n\n" not in text and "$" not in text.replace("$role", "")


def test_empty_sections_leave_no_heading_and_no_gap() -> None:
    text = build(task=Task(id="t7", title="T", path="tasks/t/t7.md"))
    for heading in (
        "## Acceptance criteria",
        "## Files to read first",
        "## Results of the tasks",
        "## Messages for you",
        "## Shared context",
        "## Orchestrator feedback",
    ):
        assert heading not in text
    assert "\n\n\n" not in text
    assert "Cover POST /login.\n\n# How to work and report" in text


def test_the_shipped_scratchpad_explanations_are_not_content_but_a_goal_is() -> None:
    assert prompts.scratchpad_content(FEEDBACK) == ""
    assert prompts.scratchpad_content(SHARED.replace("{{goal}}", "")) == ""
    shared = SHARED.replace("{{goal}}", "Ship the login page")
    assert prompts.scratchpad_content(shared) == "Goal: Ship the login page"
    assert prompts.scratchpad_content("<!-- what this is -->\n\nReal rule.\n") == "Real rule."


def test_the_inbox_says_how_many_older_messages_were_left_out() -> None:
    text = build(inbox=[("aria", "feedback", "", "More tests.")], inbox_left_out=3)
    assert "3 older messages were left out" in text and "scratchpads/*_to_tess.md" in text
    assert "### aria · feedback\n\nMore tests." in text
    assert "1 older message was left out" in build(inbox_left_out=1)


def test_a_long_dependency_result_is_cut_with_a_note() -> None:
    long = "x" * (prompts.MAX_DEP_RESULT_CHARS + 500)
    text = build(dependency_results=[("t5", "Big", long), ("t6", "Quiet", "")])
    assert "500 more characters left out" in text and "task file of t5" in text
    assert "### t6 — Quiet\n\n(no result was recorded)" in text


def test_an_oversized_prompt_is_cut_to_the_limit_with_a_visible_note() -> None:
    huge = "word " * 40_000
    text = build(body=huge, shared_context="fact " * 10_000)
    assert len(text) <= prompts.MAX_PROMPT_CHARS
    assert "nexus left out the rest of this part" in text
    assert "# How to work and report" in text and "## Shared context" in text


def test_a_task_without_a_role_gets_a_neutral_persona() -> None:
    text = build(role=None, task=Task(id="t1", title="Solo", path="tasks/t/t1.md"))
    assert text.startswith(prompts.DEFAULT_PERSONA)
    assert "You are working as `agent`" in text


def test_the_workspace_override_template_is_used(tmp_path: Path) -> None:
    assert prompts.load_template(tmp_path, "task") == TEMPLATE
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "task.md").write_text("Custom: $title for $role\n")
    template = prompts.load_template(tmp_path, "task")
    assert build(template) == "Custom: Write the login tests for tess\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello $nobody\n", "uses $nobody"),
        ("Costs 5$ each\n", "starts no variable"),
    ],
)
def test_a_broken_override_template_is_reported_with_its_path(
    tmp_path: Path, text: str, words: str
) -> None:
    (tmp_path / "prompts").mkdir()
    override = tmp_path / "prompts" / "task.md"
    override.write_text(text)
    with pytest.raises(NexusError) as exc:
        build(prompts.load_template(tmp_path, "task"))
    assert str(override) in str(exc.value) and words in str(exc.value)
    assert exc.value.fix is not None and "$$" in exc.value.fix


def test_a_missing_template_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(NexusError) as exc:
        prompts.load_template(tmp_path, "nonesuch")
    message = str(exc.value)
    assert str(tmp_path / "prompts" / "nonesuch.md") in message
    assert str(prompts_dir() / "nonesuch.md") in message


def test_render_collapses_blank_lines_but_not_inside_code_fences() -> None:
    out = prompts.render("a\n\n$x\n\n$y\n\nb\n", {"x": "", "y": "```\n1\n\n\n2\n```"})
    assert out == "a\n\n```\n1\n\n\n2\n```\n\nb\n"


def test_extract_result_takes_the_last_result_section_up_to_the_next_heading() -> None:
    body = (
        "Do it.\n\n## Result\n\nfirst try\n\n## Attempts\n\n- failed\n\n"
        "## Result (2025-01-02T10:00:00Z)\n\nsecond try\n```\n## not a heading\n```\n\n"
        "## Notes\n\nby a person\n"
    )
    assert prompts.extract_result(body) == "second try\n```\n## not a heading\n```"
    assert prompts.extract_result("## Result\n\nonly\n") == "only"
    assert prompts.extract_result("no result yet\n## Results of something\n") == ""


# -- sessions ----------------------------------------------------------------------------------

NOW = "2025-01-02T10:00:00+00:00"


def test_sessions_round_trip_through_the_file() -> None:
    s = sessions.record({}, "code", "claude-code", "s1", NOW)
    s = sessions.record(s, "aria", "codex", "c1", NOW)
    text = sessions.render_sessions(s)
    assert text.startswith("# Written by nexus")
    assert text.index("aria:") < text.index("code:")
    parsed, warning = sessions.parse_sessions(text)
    assert warning is None and parsed == s
    assert sessions.render_sessions(parsed) == text


def test_a_session_of_another_engine_is_never_resumed() -> None:
    s = sessions.record({}, "code", "claude-code", "s1", NOW)
    assert sessions.session_for(s, "code", "claude-code") == "s1"
    assert sessions.session_for(s, "code", "codex") is None
    assert sessions.session_for(s, "aria", "claude-code") is None


def test_recording_the_same_session_changes_nothing() -> None:
    s = sessions.record({}, "code", "claude-code", "s1", NOW)
    assert sessions.record(s, "code", "claude-code", "s1", "later") == s


def test_replaced_sessions_are_remembered_newest_last_at_most_five() -> None:
    s = sessions.record({}, "code", "claude-code", "s0", NOW)
    for n in range(1, 8):
        s = sessions.record(s, "code", "claude-code", f"s{n}", NOW, replaced=f"s{n - 1}")
    entry = s["code"]
    assert entry.session == "s7"
    assert entry.replaced == ("s2", "s3", "s4", "s5", "s6")


def test_a_new_engine_records_the_previous_session_in_the_history() -> None:
    s = sessions.record({}, "code", "claude-code", "s1", NOW)
    s = sessions.record(s, "code", "codex", "c1", "later")
    assert s["code"] == sessions.RoleSession("codex", "c1", "later", ("s1",))


@pytest.mark.parametrize(
    "text",
    ["code: [unclosed\n", "- a\n- b\n", "code: {engine: claude-code}\n", "code: 3\n"],
)
def test_a_corrupt_sessions_file_counts_as_empty_with_a_warning(text: str) -> None:
    parsed, warning = sessions.parse_sessions(text)
    assert parsed == {}
    assert warning is not None and "agents/sessions.yaml" in warning


def test_an_empty_sessions_file_is_fine() -> None:
    assert sessions.parse_sessions("") == ({}, None)
    assert sessions.parse_sessions(sessions.render_sessions({})) == ({}, None)
