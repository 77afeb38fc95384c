"""Where a workspace is: the file that marks it, the folder nexus keeps its runtime state in,
and the nearest workspace at or above a folder.

It imports nothing (not even pathlib), so the warm client (`nexus.warm`) can find a
workspace's command server before paying for nexus's imports.
"""

from __future__ import annotations

import os

CONFIG_FILE = "nexus.yaml"
RUNTIME = ".nexus"


def nearest_workspace(start: str) -> str | None:
    """The nearest folder at or above `start` (resolved) that holds a nexus.yaml."""
    here = os.path.realpath(start)
    while True:
        if os.path.isfile(os.path.join(here, CONFIG_FILE)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
