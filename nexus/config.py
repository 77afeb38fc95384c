"""nexus.yaml: the project's configuration, validated with messages that name the key.

Pure apart from `load`, which reads the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import frontmatter
from nexus.errors import ConfigError

DEFAULT_ROUTING: Mapping[str, Mapping[str, str]] = {
    "claude-code": {"S": "haiku", "M": "sonnet", "L": "opus"},
}
TOP_KEYS = (
    "name",
    "goal",
    "engines",
    "routing",
    "limits",
    "budgets",
    "prices",
    "roles",
    "projects_root",
    "auto_decompose",
    "auto_approve",
    "web",
    "workers",
)
LIMIT_KEYS = ("workers", "max_retries", "timeout", "retry_backoff", "rate_limit_backoff")
BUDGET_KEYS = ("project_usd",)


@dataclass(frozen=True)
class Limits:
    workers: int = 4
    max_retries: int = 2
    timeout: float = 1800.0
    retry_backoff: float = 5.0
    rate_limit_backoff: float = 30.0


@dataclass(frozen=True)
class Config:
    name: str = "nexus"
    goal: str = ""
    engines: Mapping[str, Any] = field(default_factory=dict)
    routing: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: DEFAULT_ROUTING)
    limits: Limits = Limits()
    budgets: Mapping[str, Any] = field(default_factory=dict)
    prices: Mapping[str, Any] = field(default_factory=dict)
    roles: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def default_engine(self) -> str:
        value = self.engines.get("default")
        return str(value) if value else "claude-code"

    def engine_settings(self, engine: str) -> dict[str, Any]:
        section = self.engines.get(engine)
        return dict(section) if isinstance(section, Mapping) else {}

    def model_for(self, engine: str, size: str) -> str | None:
        table = self.routing.get(engine) or {}
        model = table.get(size)
        return str(model) if model else None

    @property
    def project_budget(self) -> float | None:
        value = self.budgets.get("project_usd")
        return float(value) if isinstance(value, int | float) else None


def _positive(section: Mapping[str, Any], key: str, where: str, integer: bool) -> Any:
    value = section[key]
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0:
        raise ConfigError(
            f"nexus.yaml: {where}.{key} must be a {'whole ' if integer else ''}number ≥ 0, "
            f"not {value!r}",
            fix=f"write e.g. '{key}: 4' under '{where}:'"
            + (" (or null for no cap)" if where == "budgets" else ""),
        )
    return value


def from_mapping(data: Mapping[str, Any]) -> Config:
    warnings = [
        f"nexus.yaml: unknown key {k!r} (kept; known keys: {', '.join(TOP_KEYS)})"
        for k in data
        if k not in TOP_KEYS
    ]
    for key in ("engines", "routing", "limits", "budgets", "prices", "roles"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise ConfigError(
                f"nexus.yaml: {key} must be a mapping, not {type(data[key]).__name__}",
                fix=f"write '{key}:' followed by indented 'key: value' lines",
            )
    limits_raw = data.get("limits") or {}
    lim = {}
    for key in limits_raw:
        if key not in LIMIT_KEYS:
            warnings.append(f"nexus.yaml: unknown key limits.{key!r} (known: {LIMIT_KEYS})")
            continue
        lim[key] = _positive(limits_raw, key, "limits", integer=key in ("workers", "max_retries"))
    if "workers" in data and "workers" not in lim:
        lim["workers"] = _positive(data, "workers", "(top level)", integer=True)
    budgets = data.get("budgets") or {}
    for key in budgets:
        if key not in BUDGET_KEYS:
            warnings.append(f"nexus.yaml: unknown key budgets.{key!r} (known: {BUDGET_KEYS})")
        elif budgets[key] is not None:
            _positive(budgets, key, "budgets", integer=False)
    routing = data.get("routing") or DEFAULT_ROUTING
    for engine, table in routing.items():
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"nexus.yaml: routing.{engine} must map sizes to models",
                fix=f"write e.g. 'routing: {{{engine}: {{S: haiku, M: sonnet, L: opus}}}}'",
            )
        for size in table:
            if size not in ("S", "M", "L", "XL"):
                raise ConfigError(
                    f"nexus.yaml: routing.{engine}.{size}: {size!r} is not a size",
                    fix="use S, M, L (XL tasks are decomposed, never routed)",
                )
    return Config(
        name=str(data.get("name") or "nexus"),
        goal=str(data.get("goal") or ""),
        engines=data.get("engines") or {},
        routing=routing,
        limits=Limits(**lim),
        budgets=budgets,
        prices=data.get("prices") or {},
        roles=data.get("roles") or {},
        raw=dict(data),
        warnings=tuple(warnings),
    )


def parse_mapping(text: str) -> dict[str, Any]:
    """The YAML of nexus.yaml as a mapping (validated by `from_mapping`)."""
    import yaml

    try:
        data = yaml.load(text, Loader=frontmatter.safe_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"nexus.yaml{line}: not valid YAML: {exc.problem}",
            fix="fix the YAML syntax on that line",
        ) from None
    try:
        frontmatter.check_shape(data)
    except frontmatter.FrontmatterError as exc:
        raise ConfigError(f"nexus.yaml: {exc.message}", fix=exc.fix) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            "nexus.yaml must be a mapping of 'key: value' lines", fix="see `nexus init` output"
        )
    return dict(data)


def parse(text: str) -> Config:
    return from_mapping(parse_mapping(text))


def load(path: Path, cache: Path | None = None) -> Config:
    """Read nexus.yaml; with `cache`, reuse the parsed mapping while the file is unchanged."""
    import marshal

    try:
        st = path.stat()
    except FileNotFoundError:
        return Config()
    key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
    if cache is not None:
        try:
            cached_key, data = marshal.loads(cache.read_bytes())
            if tuple(cached_key) == key:
                return from_mapping(data)
        except (OSError, EOFError, ValueError, TypeError):
            pass
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path.name}: {exc}", fix="make it a UTF-8 text file"
        ) from None
    data = parse_mapping(text)
    config = from_mapping(data)
    if cache is not None:
        with contextlib.suppress(OSError, ValueError):
            cache.write_bytes(marshal.dumps((key, data)))
    return config
