"""Projects for the MCP surface: a project is a workspace, a folder right under the projects
root (default: the server's working directory) named by a slug.

A call names its project with a `project` argument, relative to the root ("." for the root
itself); without one it means the current project: the one last created or resumed in this
server, else the server's `--workspace`, else the workspace around its working directory.
Nothing outside the root is reachable by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexus.errors import NexusError, ValidationError, WorkspaceError
from nexus.locate import CONFIG_FILE
from nexus.service import Service, status_counts
from nexus.store import Workspace
from nexus.task import id_problem

NO_PROJECT_FIX = (
    "pass `project` (nexus_list_projects lists them), or create one with nexus_create_project"
)


class Projects:
    """The projects one server can reach, and a Service (actor `mcp`) per workspace."""

    def __init__(
        self,
        root: Path,
        workspace: Path | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root.expanduser().resolve()
        self.default = Workspace.find(workspace).root if workspace is not None else None
        self.current: Path | None = None
        self.warn = warn or (lambda _m: None)
        self._services: dict[Path, Service] = {}

    # -- naming ------------------------------------------------------------------------------

    def path_of(self, project: str) -> Path:
        """The folder a project name means; refuses names that leave the root."""
        if not project.strip():
            raise ValidationError("the project name is empty", fix=NO_PROJECT_FIX)
        try:
            return Workspace(self.root).inside(project)
        except WorkspaceError:
            raise ValidationError(
                f"project {project!r} is not a folder under the projects root {self.root}",
                fix="name a project by its folder under the root (see nexus_list_projects), "
                "without '/' at the start, '..' or links pointing out",
            ) from None

    def name_of(self, root: Path) -> str:
        if root == self.root:
            return "."
        if self.root in root.parents:
            return root.relative_to(self.root).as_posix()
        return str(root)

    # -- selecting ---------------------------------------------------------------------------

    def workspace(self, project: str | None) -> Workspace:
        if project is not None:
            folder = self.path_of(project)
            if not (folder / CONFIG_FILE).is_file():
                raise ValidationError(
                    f"there is no project {project!r} under {self.root}",
                    fix="see the projects with nexus_list_projects, or create it with "
                    "nexus_create_project",
                )
            return Workspace(folder)
        chosen = self.current or self.default
        if chosen is not None:
            return Workspace(chosen)
        try:
            return Workspace.find()
        except WorkspaceError:
            raise ValidationError(
                f"no project is selected and there is no workspace around {Path.cwd()}",
                fix=NO_PROJECT_FIX,
            ) from None

    def service(self, project: str | None) -> Service:
        ws = self.workspace(project)
        svc = self._services.get(ws.root)
        if svc is None:
            svc = Service(ws, actor="mcp", warn=self.warn)
            self._services[ws.root] = svc
        return svc

    def select(self, svc: Service) -> None:
        self.current = svc.ws.root

    # -- creating and listing ----------------------------------------------------------------

    def create(self, name: str, goal: str) -> Service:
        from nexus.scaffold import init

        if problem := id_problem(name, "project name"):
            raise ValidationError(problem, fix="use a slug such as `auth-migration`")
        folder = self.path_of(name)
        if (folder / CONFIG_FILE).is_file():
            raise ValidationError(
                f"project {name!r} already exists ({folder})",
                fix=f"resume it with nexus_resume (project {name!r}), or choose another name",
            )
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValidationError(
                f"{folder} already exists and is not empty",
                fix="choose another project name",
            )
        if "\n" in goal:
            raise ValidationError("the goal must be one line", fix="put details in the plan")
        self.root.mkdir(parents=True, exist_ok=True)
        ws = init(folder, name=name, goal=goal.strip(), actor="mcp")
        svc = self.service(self.name_of(ws.root))
        self.select(svc)
        return svc

    def listing(self) -> list[dict[str, Any]]:
        """Every workspace at the root or one level below it, with its task summary."""
        folders = [self.root] if (self.root / CONFIG_FILE).is_file() else []
        if self.root.is_dir():
            folders += sorted(
                p
                for p in self.root.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / CONFIG_FILE).is_file()
            )
        for extra in (self.default, self.current):
            if extra is not None and extra not in folders:
                folders.append(extra)
        return [self.summary(Workspace(folder)) for folder in folders]

    def summary(self, ws: Workspace) -> dict[str, Any]:
        """Name, goal, counts and progress, read without changing anything."""
        entry: dict[str, Any] = {"project": self.name_of(ws.root), "path": str(ws.root)}
        try:
            scan = ws.scan()
            cfg = ws.config
        except (NexusError, OSError) as exc:  # one broken project must not hide the others
            return {**entry, "error": str(exc)}
        counts, progress = status_counts(scan.tasks)
        return {
            **entry,
            "name": cfg.name,
            "goal": cfg.goal,
            "tasks": len(scan.tasks),
            "counts": {k: v for k, v in counts.items() if v},
            "progress": progress,
            "unreadable": len(scan.broken),
            "current": ws.root == (self.current or self.default),
        }
