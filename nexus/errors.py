"""The one exception tree of nexus.

    NexusError                      anything nexus reports to a person (exit code 1)
    ├── WorkspaceError              no workspace, a workspace that is broken or locked
    ├── TaskFileError               a task file that cannot be read (file, line, field, fix)
    ├── ValidationError             a value that breaks a rule (unknown dep, cycle, bad id, ...)
    ├── TransitionError             a status change the lifecycle does not allow
    ├── GitError                    git refused or failed; carries git's own words
    ├── ConfigError                 nexus.yaml is wrong
    └── EngineError                 an engine cannot be used (missing binary or key)

Every message says what is wrong *and* what to do about it. Foreign exceptions (yaml, OSError,
subprocess, SDKs) are converted into these at the boundary where they happen.
"""

from __future__ import annotations


class NexusError(Exception):
    """Base of every error nexus reports to a person."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class WorkspaceError(NexusError):
    pass


class TaskFileError(NexusError):
    def __init__(
        self,
        message: str,
        *,
        path: str,
        field: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        where = path + (f":{line}" if line else "") + (f" (field {field})" if field else "")
        super().__init__(f"{where}: {message}", fix=fix)
        self.path = path
        self.field = field
        self.line = line
        self.detail = message

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "field": self.field,
                "message": self.detail, "fix": self.fix}  # fmt: skip


class ValidationError(NexusError):
    pass


class TransitionError(NexusError):
    pass


class GitError(NexusError):
    pass


class ConfigError(NexusError):
    pass


class EngineError(NexusError):
    pass
