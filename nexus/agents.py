"""Roles and routing: which persona runs a task, on which engine, model and settings.

A role is `agents/<role>.md` (frontmatter + a persona body) with the `roles.<role>` entry of
nexus.yaml merged over its frontmatter.  Pure except `load_roles`, which reads the files.

Routing precedence (every `Route` says which rule decided, for `nexus why`, commits and logs):

    engine    --engine flag > task engine > role engine > engines.default (claude-code)
    model     task model > role model > routing.<engine>.<size> > the engine's own default
    settings  engines.<engine> < role settings < task engine_settings   (merged key by key)

A model name belongs to an engine, so the task's or the role's model is used only when it was
given for the chosen engine (or without naming any engine).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from nexus import frontmatter, taskfile
from nexus.config import Config
from nexus.errors import TaskFileError
from nexus.task import Task, id_problem


class SessionMode(StrEnum):
    PERSISTENT = "persistent"  # one engine session, resumed for every task of the role
    PER_TASK = "per-task"


KNOWN_FIELDS = (
    "name",
    "role",
    "title",
    "engine",
    "model",
    "session",
    "traits",
    "expertise",
    "settings",
)
MAX_ROLE_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Role:
    """A role after merging nexus.yaml over its file.  `fields` is the merged frontmatter
    mapping, unknown keys included."""

    name: str  # display name ("Aria")
    role: str  # id: the file stem ("aria")
    title: str = ""
    engine: str | None = None
    model: str | None = None
    session: SessionMode = SessionMode.PER_TASK
    traits: tuple[str, ...] = ()
    expertise: tuple[str, ...] = ()
    persona: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""  # relative to the workspace root, e.g. "agents/aria.md"
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def persistent(self) -> bool:
        return self.session is SessionMode.PERSISTENT

    def summary(self) -> dict[str, Any]:
        """The JSON object every surface shows for a role (without the persona text)."""
        return {
            "role": self.role,
            "name": self.name,
            "title": self.title,
            "engine": self.engine,
            "model": self.model,
            "session": str(self.session),
            "traits": list(self.traits),
            "expertise": list(self.expertise),
            "settings": dict(self.settings),
            "path": self.path,
        }


class _Bad(Exception):
    def __init__(self, key: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.key, self.message, self.fix = key, message, fix


def _checked(parse: Any, fields: Mapping[str, Any], key: str) -> Any:
    """Run one of taskfile's field validators (the same rules as task files), reporting
    through `_Bad`."""
    try:
        return parse(fields, key, "")
    except TaskFileError as exc:
        raise _Bad(key, exc.detail, exc.fix or "see agents/code.md for an example") from None


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value: str | None = _checked(taskfile.text_field, fields, key)
    return value.strip() or None if value else None


def _words(fields: Mapping[str, Any], key: str) -> tuple[str, ...]:
    words: tuple[str, ...] = _checked(taskfile.list_field, fields, key)
    return words


def _session(fields: Mapping[str, Any]) -> SessionMode:
    value = fields.get("session")
    if value is None:
        return SessionMode.PER_TASK
    try:
        return SessionMode(str(value))
    except ValueError:
        raise _Bad(
            "session",
            f"{value!r} is not a session mode",
            "write 'session: persistent' (one engine session kept across tasks) or "
            "'session: per-task'",
        ) from None


def _settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    value = fields.get("settings")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Bad(
            "settings",
            f"must be a mapping of engine options, not {type(value).__name__}",
            "write 'settings: {permission_mode: acceptEdits}' or indented 'key: value' lines",
        )
    return dict(value)


def _merge(file_fields: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """nexus.yaml over the file; `settings` mappings merge key by key."""
    merged = dict(file_fields)
    for key, value in override.items():
        old = merged.get(key)
        if key == "settings" and isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


def _split_file(text: str) -> tuple[dict[str, Any], str]:
    """Frontmatter and persona body; a file without frontmatter is all persona."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    if first.rstrip() != "---":
        if not text.strip():
            raise frontmatter.FrontmatterError(
                "the file is empty", line=1, fix="write the persona (see agents/code.md)"
            )
        return {}, text
    sp = frontmatter.split(text)
    return (frontmatter.load(sp) if sp.yaml_text.strip() else {}), sp.body


def parse_role(
    role_id: str,
    text: str,
    path: str,
    override: Mapping[str, Any] | None = None,
    known_engines: Collection[str] = (),
) -> tuple[Role | None, list[str]]:
    """Build a role from its file text and its nexus.yaml entry.  Returns the role (None when
    it cannot be used) and the problems found, each naming the file, the field and the fix.
    With `known_engines`, an engine outside it is reported (the role is still loaded: dispatch
    says why its tasks wait)."""
    problems: list[str] = []
    if p := id_problem(role_id, "role name"):
        return None, [f"{path}: {p}; the role is not loaded — fix: rename the file"]
    try:
        file_fields, body = _split_file(text)
    except frontmatter.FrontmatterError as exc:
        line = f":{exc.line}" if exc.line else ""
        fix = f"; fix: {exc.fix}" if exc.fix else ""
        return None, [f"{path}{line}: {exc.message} — role {role_id} not loaded{fix}"]
    override = override or {}
    where = {key: path for key in file_fields}
    where.update({key: f"nexus.yaml roles.{role_id}" for key in override})
    fields = _merge(file_fields, override)
    problems += [
        f"{where[k]}: unknown field {k!r} (kept; known fields: {', '.join(KNOWN_FIELDS)})"
        for k in fields
        if k not in KNOWN_FIELDS
    ]
    try:
        declared = _text(fields, "role")
        role = Role(
            name=_text(fields, "name") or role_id,
            role=role_id,
            title=_text(fields, "title") or "",
            engine=_text(fields, "engine"),
            model=_text(fields, "model"),
            session=_session(fields),
            traits=_words(fields, "traits"),
            expertise=_words(fields, "expertise"),
            persona=body.strip(),
            settings=_settings(fields),
            path=path,
            fields=fields,
        )
    except _Bad as bad:
        return None, [
            *problems,
            f"{where.get(bad.key, path)} (field {bad.key}): {bad.message} — role {role_id} "
            f"not loaded; fix: {bad.fix}",
        ]
    if declared is not None and declared != role_id:
        problems.append(
            f"{where['role']} (field role): says {declared!r} but the file name makes it "
            f"{role_id!r}, which is used; fix: make them the same"
        )
    if role.engine and known_engines and role.engine not in known_engines:
        problems.append(
            f"{where['engine']} (field engine): unknown engine {role.engine!r}; tasks of role "
            f"{role_id} wait until it exists — fix: use one of {', '.join(sorted(known_engines))}"
        )
    if not role.persona:
        problems.append(
            f"{path}: role {role_id} has no persona text below the frontmatter; "
            "fix: describe who the agent is and how it works"
        )
    return role, problems


def load_roles(ws_root: Path, config: Config) -> tuple[dict[str, Role], list[str]]:
    """Every usable role of the workspace (by id, sorted) and the problems found.  A file that
    cannot be used is reported and skipped; the others load."""
    from nexus.engines.base import engine_names

    folder = ws_root / "agents"
    roles: dict[str, Role] = {}
    problems: list[str] = []
    files = sorted(folder.glob("*.md")) if folder.is_dir() else []
    known = engine_names()
    overrides = config.roles
    root = ws_root.resolve()
    for file in files:
        rel = f"agents/{file.name}"
        try:
            if not file.resolve().is_relative_to(root):
                raise OSError("it links to a file outside the workspace")
            if not file.is_file():
                raise OSError("it is not a regular file")
            if file.stat().st_size > MAX_ROLE_FILE_BYTES:
                raise OSError(f"it is larger than {MAX_ROLE_FILE_BYTES // 1024} KB")
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{rel}: cannot be read ({exc}); the role is not loaded")
            continue
        override = overrides.get(file.stem)
        if override is not None and not isinstance(override, Mapping):
            problems.append(
                f"nexus.yaml roles.{file.stem}: must be a mapping of role fields, not "
                f"{type(override).__name__} (ignored); fix: write e.g. "
                f"'roles: {{{file.stem}: {{engine: codex}}}}'"
            )
            override = None
        role, found = parse_role(file.stem, text, rel, override, known)
        problems += found
        if role is not None:
            roles[role.role] = role
    stems = {f.stem for f in files}
    problems += [
        f"nexus.yaml roles.{name}: there is no agents/{name}.md, so this entry does nothing; "
        f"fix: create agents/{name}.md or remove the entry"
        for name in overrides
        if name not in stems
    ]
    return roles, problems


@dataclass(frozen=True)
class Route:
    """Where a task runs, and why."""

    engine: str
    model: str | None  # None: the engine's own default model
    settings: Mapping[str, Any]
    reason: str


def route(
    task: Task, role: Role | None, config: Config, override_engine: str | None = None
) -> Route:
    """Engine, model and settings for `task` (see the module docstring for the precedence).
    XL tasks are routed like any other; dispatch refuses them separately."""
    if override_engine:
        engine, why_engine = override_engine, f"engine {override_engine} from --engine"
    elif task.engine:
        engine, why_engine = task.engine, f"engine {task.engine} from the task"
    elif role is not None and role.engine:
        engine, why_engine = role.engine, f"engine {role.engine} from role {role.role}"
    else:
        engine = config.default_engine
        source = "engines.default" if config.engines.get("default") else "built-in default"
        why_engine = f"engine {engine} ({source})"

    size = str(task.size)
    routed = config.model_for(engine, size)
    model: str | None
    if task.model and (not task.engine or task.engine == engine):
        model, why_model = task.model, f"model {task.model} from the task"
    elif role is not None and role.model and (not role.engine or role.engine == engine):
        model, why_model = role.model, f"model {role.model} from role {role.role}"
    elif routed:
        model, why_model = routed, f"size {size} → {routed} (routing.{engine})"
    else:
        model, why_model = None, f"{engine}'s default model (no routing.{engine}.{size})"

    settings = config.engine_settings(engine)
    if role is not None:
        settings.update(role.settings)
    extra = task.fields.get("engine_settings")
    if isinstance(extra, Mapping):
        settings.update(extra)
    elif extra is not None:
        why_model += "; the task's engine_settings is not a mapping and was ignored"
    return Route(engine, model, settings, f"{why_engine}; {why_model}")
