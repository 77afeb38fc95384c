"""Fake model API servers that speak the real wire protocols, for tests and benchmarks.

    from tests.fakes import FakeAnthropic, FakeOpenAI, tool_call, error

See `tests.fakes.http_base` for the script format and the process mode, and the two server
modules for what each endpoint returns.  Names are loaded on first use, so that
`python -m tests.fakes.anthropic_server` does not import its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.anthropic_server import FakeAnthropic
    from tests.fakes.http_base import (
        SCRIPT_EXHAUSTED,
        FakeServer,
        Request,
        ToolCall,
        Turn,
        error,
        text,
        to_turn,
        tool_call,
    )
    from tests.fakes.openai_server import FakeOpenAI

__all__ = [
    "SCRIPT_EXHAUSTED",
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeServer",
    "Request",
    "ToolCall",
    "Turn",
    "error",
    "text",
    "to_turn",
    "tool_call",
]
_HOMES = {
    **dict.fromkeys(__all__, "tests.fakes.http_base"),
    "FakeAnthropic": "tests.fakes.anthropic_server",
    "FakeOpenAI": "tests.fakes.openai_server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
