"""The oracle (Nexus Prime): a question in text to any engine, and a conversation that asks
again, with the problems found, until the answer validates.

Shell.  The oracle is role `prime` routed like a task of size L (plans, adapt) or M (reviews):
`--engine` > the role's engine > engines.default, the model from the role or the size routing.
It runs in the workspace and is not meant to write files: claude-code gets no write, edit or
shell tools, codex a read-only sandbox, gemini the approval mode that refuses edits.  API
engines keep their workspace tools (the prompt asks for an answer, not for files).

A rejected answer is sent back with the problems: in the same session when the engine resumes
sessions and reported one, else as a new question holding the first prompt, the previous answer
and the problems.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nexus import agents, results, runner
from nexus.engines.base import EngineResult, Job, Usage, get_engine
from nexus.errors import NexusError
from nexus.plans import Problem, Rejected, dump
from nexus.store import Workspace
from nexus.task import Size, Task

T = TypeVar("T")
ROLE = "prime"
MAX_ECHO_CHARS = 30_000
READ_ONLY: Mapping[str, Mapping[str, Any]] = {
    "claude-code": {"disallowed_tools": ["Write", "Edit", "MultiEdit", "NotebookEdit", "Bash"]},
    "codex": {"sandbox": "read-only"},
    "gemini": {"approval_mode": "default"},
}


@dataclass
class Spend:
    """What the oracle's answers cost, summed over the questions of one conversation."""

    engine: str
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    asks: int = 0

    def add(self, result: EngineResult) -> None:
        self.asks += 1
        self.model = result.model or self.model
        self.usage = self.usage + result.usage
        if result.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + result.cost_usd

    def facts(self) -> dict[str, str]:
        """Trailers for the commit that records the answer (Attempt: how many were asked)."""
        total = EngineResult(True, usage=self.usage, cost_usd=self.cost_usd, model=self.model)
        return results.facts(total, results.RunInfo(self.engine, self.model, ROLE, self.asks))

    def summary(self) -> dict[str, Any]:
        """What a plan file records about the oracle that wrote it."""
        out: dict[str, Any] = {"engine": self.engine, "model": self.model, "asks": self.asks}
        if self.cost_usd is not None:
            out["cost_usd"] = round(self.cost_usd, 6)
        if self.usage.input_tokens or self.usage.output_tokens:
            out["tokens"] = f"{self.usage.input_tokens}/{self.usage.output_tokens}"
        return {k: v for k, v in out.items() if v is not None}


class NoValidAnswer(Rejected):
    """Every answer was rejected; `answer` is the last one."""

    def __init__(self, problems: list[Problem], what: str, answer: str, spend: Spend) -> None:
        super().__init__(problems, what)
        self.answer = answer
        self.spend = spend


class Oracle:
    def __init__(self, ws: Workspace, route: agents.Route, persona: str, timeout: float) -> None:
        self.ws = ws
        self.engine = route.engine
        self.model = route.model
        self.reason = route.reason
        settings = dict(route.settings)
        for key, value in READ_ONLY.get(self.engine, {}).items():
            old = settings.get(key)
            if isinstance(value, list) and isinstance(old, list):
                value = [*old, *(v for v in value if v not in old)]
            settings[key] = value
        if ws.config.prices and "prices" not in settings:
            settings["prices"] = dict(ws.config.prices)
        self.settings = settings
        self.persona = persona
        self.timeout = timeout

    @classmethod
    def for_workspace(cls, ws: Workspace, engine: str | None = None, size: str = "L") -> Oracle:
        """The oracle of `ws`: role prime, routed like a task of `size`."""
        roles, _problems = agents.load_roles(ws.root, ws.config)
        role = roles.get(ROLE)
        task = Task(id=ROLE, title="oracle", path="", size=Size(size), role=ROLE)
        route = agents.route(task, role, ws.config, engine)
        persona = role.persona if role is not None else ""
        return cls(ws, route, persona, ws.config.limits.timeout)

    def problem(self) -> str | None:
        """None when the engine can answer here; else what is missing and the fix."""
        try:
            return get_engine(self.engine).check(self.settings, os.environ)
        except NexusError as exc:
            return str(exc)

    @property
    def can_resume(self) -> bool:
        try:
            return get_engine(self.engine).capabilities.can_resume
        except NexusError:
            return False

    def ask(
        self, prompt: str, *, label: str, session: str | None = None, attempt: int = 1
    ) -> EngineResult:
        """One answer; raises NexusError with the engine's reason when there is none."""
        task = Task(id=label, title=f"oracle: {label}", path="", role=ROLE)
        job = Job(
            task_id=label,
            prompt=prompt,
            workdir=self.ws.root,
            workspace=self.ws.root,
            role=ROLE,
            system_prompt=self.persona,
            model=self.model,
            timeout=self.timeout,
            session=session,
            settings=self.settings,
            env=runner.job_env(self.engine, self.settings, self.ws, task),
            task_fields={"id": label, "title": task.title, "attempts": attempt, "role": ROLE},
        )
        try:
            result = get_engine(self.engine).run(job)
        except NexusError:
            raise
        except Exception as exc:  # an engine bug is reported, never a traceback
            raise NexusError(f"the oracle's engine {self.engine} crashed: {exc}") from exc
        if not result.ok:
            what = "is rate-limited" if result.rate_limited else "failed"
            raise NexusError(
                f"the oracle (engine {self.engine}, {self.reason}) {what}: {result.reason}",
                fix="check the engine with `nexus doctor`, or choose another with --engine",
            )
        return result


def converse(
    oracle: Oracle,
    prompt: str,
    parse: Callable[[str], T],
    *,
    label: str,
    attempts: int = 3,
) -> tuple[T, Spend]:
    """Ask, and ask again with the problems while `parse` rejects the answer (at most
    `attempts` questions).  Raises `NoValidAnswer` after the last rejection."""
    spend = Spend(oracle.engine, oracle.model)
    question, session = prompt, None
    for attempt in range(1, max(attempts, 1) + 1):
        result = oracle.ask(question, label=label, session=session, attempt=attempt)
        spend.add(result)
        try:
            return parse(result.text), spend
        except Rejected as exc:
            rejected = exc
        fix = follow_up(rejected)
        if oracle.can_resume and result.session:
            question, session = fix, result.session
        else:
            echo = result.text[:MAX_ECHO_CHARS]
            question = f"{prompt}\n\n# Your previous answer\n\n{echo}\n\n# Problems\n\n{fix}"
    raise NoValidAnswer(rejected.problems, rejected.what, result.text, spend)


def follow_up(rejected: Rejected) -> str:
    lines = "\n".join(f"- {p}" for p in rejected.problems[:100])
    return (
        f"Your answer could not be used: {rejected.what} has these problems:\n\n{lines}\n\n"
        "Answer again with the complete, corrected answer: exactly one fenced YAML block in "
        "the form asked for, and nothing after it."
    )


# -- offline (quickstart --engine script) ----------------------------------------------------

TEAM = (
    ("spec", "aria", "S", "Specify", "a short specification in notes/spec.md"),
    ("build", "code", "M", "Implement", "the implementation the specification describes"),
    ("tests", "alpha", "M", "Write tests for", "tests for every behaviour in the specification"),
    ("check", "beta", "S", "Validate", "the test run and its outcome"),
)


def offline_roles(goal: str) -> dict[str, Any]:
    """The `roles:` section that makes prime and the four team roles scripted agents: prime
    answers with a fixed four-task plan for `goal` (specify → implement → test → validate) and
    each agent writes a note about its task.  For trying the whole flow without a model."""
    tasks = []
    previous: list[str] = []
    for key, role, size, verb, deliverable in TEAM:
        tasks.append(
            {
                "key": key,
                "title": f"{verb}: {goal}"[:120],
                "size": size,
                "role": role,
                "deps": previous,
                "acceptance": [f"the result describes {deliverable}"],
                "body": f"{verb} — part of: {goal}\n",
            }
        )
        previous = [key]
    answer = f"```yaml\n{dump({'goal': goal, 'tasks': tasks})}```\n"

    def scripted(steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"engine": "script", "settings": {"steps": steps}}

    roles = {
        ROLE: scripted([{"usage": {"input_tokens": 900, "output_tokens": 400}}, {"result": answer}])
    }
    for _key, role, _size, _verb, deliverable in TEAM:
        roles[role] = scripted(
            [
                {"write": "notes/{task_id}.md", "content": "# {title}\n\nDone by {role}.\n"},
                {"result": f"{role} (scripted) delivered {deliverable}: notes/{{task_id}}.md"},
            ]
        )
    return roles
