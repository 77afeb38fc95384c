"""`nexus demo`: the NEXUS pipeline, offline, doing real work with the `script` engine.

Aria writes a specification and sends it to Code; Code writes a Python module; Alpha writes
pytest-style tests for it; Beta runs them for real and reports the output.  With
`--engine claude-code` the same pipeline runs with real Claude Code agents instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nexus.errors import EngineError

SPEC = """Build `calc.py` with two functions:
- add(a, b) returns a + b;
- divide(a, b) returns a / b and raises ValueError("division by zero") when b == 0.
Edge cases: negative numbers, floats, zero divisor."""

CALC = '''"""A small calculator, written by Code in the nexus demo."""


def add(a: float, b: float) -> float:
    return a + b


def divide(a: float, b: float) -> float:
    if b == 0:
        raise ValueError("division by zero")
    return a / b
'''

TESTS = '''"""Tests for calc.py, written by Alpha.  Runs under pytest, or directly with python."""

import calc


def test_add_handles_negatives_and_floats():
    assert calc.add(2, 3) == 5
    assert calc.add(-2, 0.5) == -1.5


def test_divide():
    assert calc.divide(9, 3) == 3


def test_divide_by_zero_raises():
    try:
        calc.divide(1, 0)
    except ValueError as exc:
        assert "zero" in str(exc)
    else:
        raise AssertionError("divide(1, 0) did not raise")


if __name__ == "__main__":
    tests = [f for name, f in sorted(globals().items()) if name.startswith("test_")]
    for test in tests:
        test()
        print(f"PASSED {test.__name__}")
    print(f"{len(tests)} passed")
'''


def script_roles() -> dict[str, Any]:
    """The `roles:` section that makes the four team roles scripted agents."""

    def role(steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"engine": "script", "settings": {"steps": steps}}

    return {
        "aria": role(
            [
                {"write": "docs/spec.md", "content": f"# Specification\n\n{SPEC}\n"},
                {"message": {"to": "code", "type": "task_assignment", "text": SPEC}},
                {"usage": {"input_tokens": 1200, "output_tokens": 300}},
                {"result": "Specification written to docs/spec.md and sent to code."},
            ]
        ),
        "code": role(
            [
                {"write": "calc.py", "content": CALC},
                {
                    "message": {
                        "to": "alpha",
                        "type": "response",
                        "text": "calc.py implements add and divide (ValueError on zero).",
                    }
                },
                {"usage": {"input_tokens": 2100, "output_tokens": 650}},
                {"result": "Implemented calc.py: add(a, b) and divide(a, b)."},
            ]
        ),
        "alpha": role(
            [
                {"write": "test_calc.py", "content": TESTS},
                {
                    "message": {
                        "to": "beta",
                        "type": "response",
                        "text": "test_calc.py has 3 tests; run `python test_calc.py`.",
                    }
                },
                {"usage": {"input_tokens": 1800, "output_tokens": 520}},
                {"result": "Wrote 3 tests in test_calc.py (negatives, floats, zero divisor)."},
            ]
        ),
        "beta": role(
            [
                {"run": ["{python}", "test_calc.py"]},
                {
                    "message": {
                        "to": "aria",
                        "type": "status_update",
                        "text": "Validation done:\n\n```\n{output}\n```",
                    }
                },
                {"usage": {"input_tokens": 900, "output_tokens": 200}},
                {"result": "Ran the tests for real:\n\n```\n{output}\n```"},
            ]
        ),
    }


def configure(root: Path, engine: str) -> None:
    """Point the workspace's team roles at `engine` (scripted steps for `script`)."""
    config = root / "nexus.yaml"
    text = config.read_text(encoding="utf-8")
    if engine == "script":
        roles = script_roles()
    else:
        from nexus.engines.base import get_engine

        problem = get_engine(engine).check({}, __import__("os").environ)
        if problem:
            raise EngineError(f"cannot run the demo with {engine}: {problem}")
        roles = {r: {"engine": engine} for r in ("aria", "code", "alpha", "beta")}
    block = yaml.safe_dump({"roles": roles}, sort_keys=False, allow_unicode=True, width=100)
    config.write_text(
        text.rstrip("\n") + "\n\n# Added by `nexus demo`.\n" + block, encoding="utf-8"
    )
