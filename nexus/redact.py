"""Secrets out of text: the values of secret-looking environment variables, masked.

Pure.  A variable is secret-looking when its name holds one of `SECRET_MARKERS` (KEY, TOKEN,
SECRET, PASSWORD, ...); its value is masked as `<NAME redacted>` wherever it appears, when it is
long enough to be a secret (`MIN_SECRET_LENGTH`: shorter values such as "1" or "true" would
mask ordinary words).  Used wherever text that an agent or an exception produced is about to be
kept: agent results, failure reasons, messages and progress lines (the engines), the event log
and crash logs.  It is a second line of defence: keys are first kept out of places they do not
belong (see docs/security.md).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "AUTH", "CREDENTIAL", "PRIVATE")
MIN_SECRET_LENGTH = 8
# Command-line options whose value is a secret (`nexus serve --token X`, `--token=X`).
SECRET_OPTIONS = ("--token",)


_SECRET_NAME = re.compile("|".join(SECRET_MARKERS), re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def secret_values(*envs: Mapping[str, str]) -> dict[str, str]:
    """value → variable name for every secret-looking variable of `envs` (default: this
    process's environment), longest values first so that a key containing another is masked
    whole."""
    found: dict[str, str] = {}
    for env in envs or (os.environ,):
        for name in env:
            if _SECRET_NAME.search(name) is not None:
                value = env[name]
                if len(value.strip()) >= MIN_SECRET_LENGTH:
                    found.setdefault(value, name)
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))


def redactor(*envs: Mapping[str, str]) -> Callable[[str], str]:
    """`redact` for the secrets of `envs` as they are now, compiled once (for a sink that
    masks every line it writes)."""
    return _compiled(tuple(secret_values(*envs).items()))


@functools.lru_cache(maxsize=32)
def _compiled(secrets: tuple[tuple[str, str], ...]) -> Callable[[str], str]:
    # Cached: engines mask every progress line with the same few secrets.
    if not secrets:
        return lambda text: text
    names = dict(secrets)
    pattern = re.compile("|".join(re.escape(value) for value, _ in secrets))
    return lambda text: pattern.sub(lambda m: f"<{names[m.group(0)]} redacted>", text)


def redact_data(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` (JSON-like: strings, lists, mappings) with `scrub` applied to every string."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: redact_data(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v, scrub) for v in value]
    return value


def redact(text: str, *envs: Mapping[str, str]) -> str:
    """`text` with every secret value of `envs` (default: this process's environment)
    replaced by `<NAME redacted>`."""
    return redactor(*envs)(text) if text else text


def option_secrets(argv: Sequence[str]) -> dict[str, str]:
    """The values given to secret options on a command line, as an environment-like mapping
    (`{"--token": value}`) for `redact`."""
    found: dict[str, str] = {}
    for index, arg in enumerate(argv):
        option, eq, value = arg.partition("=")
        if option in SECRET_OPTIONS:
            value = value if eq else (argv[index + 1] if index + 1 < len(argv) else "")
            if value:
                found[option] = value
    return found


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the values of secret options masked (`--token X`, `--token=X`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        option, eq, _ = arg.partition("=")
        if option in SECRET_OPTIONS:
            out.append(f"{option}=<redacted>" if eq else arg)
            hide_next = not eq
        else:
            out.append(arg)
    return out
