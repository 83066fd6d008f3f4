"""Reading TOML files with `${ENV}` interpolation and error messages that name file, key and line.

Both `dialer.toml` and campaign files go through here, so a user always sees the same shape of
message: `campaigns/x.toml: line 7: retry.busy: expected a duration ..., got '20 minutes'`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from dialer.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A campaign file, a rule pack or dialer.toml is a few KB; anything past this is not one (and a
# device such as /dev/zero would never end)
MAX_TOML_BYTES = 4 << 20
_NUL_ESCAPE = re.compile(r"\\u0000|\\U00000000")  # how a TOML string spells a NUL byte

Model = TypeVar("Model", bound=pydantic.BaseModel)


def read_toml(path: Path, what: str) -> tuple[dict[str, Any], str]:
    """Return the parsed document and its text; raise ConfigError naming the line on bad syntax."""
    try:
        if path.exists() and not path.is_file():  # a directory, a device (/dev/zero), a FIFO
            raise ConfigError(f"{path}: not a file (expected a {what})")
        with path.open("rb") as handle:
            raw = handle.read(MAX_TOML_BYTES + 1)
        if len(raw) > MAX_TOML_BYTES:
            raise ConfigError(f"{path}: over {MAX_TOML_BYTES >> 20} MiB: not a {what}")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    carrying = nul_carriers(document)
    if carrying:  # TOML allows "\u0000"; PostgreSQL (and an HTTP header) cannot hold it
        escape = _NUL_ESCAPE.search(text)
        where = f"line {text[: escape.start()].count(chr(10)) + 1}: " if escape else ""
        shown = ", ".join(carrying[:5])
        raise ConfigError(f"{path}: {where}a NUL byte (\\u0000) in {shown}: remove it")
    return document, text


def nul_carriers(document: Any) -> list[str]:
    """The dotted keys (list items as `key[i]`) whose key or string holds a NUL byte, which
    PostgreSQL's text and jsonb cannot store: a document's values are checked once, where it
    is read (a TOML file, a request's JSON body), instead of failing at the database. Walked
    without recursion: a body nested as deep as the JSON reader allows is still answered."""
    found: list[str] = []
    waiting: list[tuple[str, Any]] = [("", document)]
    while waiting:
        location, value = waiting.pop()
        if isinstance(value, str):
            if "\x00" in value:
                found.append(location or "(top level)")
        elif isinstance(value, dict):
            for key, item in value.items():
                where = f"{location}.{key}" if location else str(key)
                if "\x00" in key:  # JSON and TOML keys are strings
                    found.append(repr(where))
                else:
                    waiting.append((where, item))
        elif isinstance(value, list):
            waiting += [(f"{location}[{i}]", item) for i, item in enumerate(value)]
    return sorted(found)


def interpolate_env(value: Any, location: str = "") -> Any:
    """Replace `${NAME}` in strings with the environment variable; a missing one is an error."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{location}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: interpolate_env(v, f"{location}.{k}" if location else k) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_env(v, f"{location}[{i}]") for i, v in enumerate(value)]
    return value


def key_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number of the key a validation error points at, for the message."""
    names = [str(part) for part in loc if isinstance(part, str)]
    if not names:
        return None
    lines = text.splitlines()
    # Look for the innermost key written as `key =` (bare or quoted), preferring one that appears
    # after its parent table header or inline-table key.
    start = 0
    for parent in names[:-1]:
        for number, line in enumerate(lines[start:], start):
            if re.match(rf"^\s*\[+\s*[^\]]*\b{re.escape(parent)}\b", line) or re.match(
                rf"^\s*\"?{re.escape(parent)}\"?\s*=", line
            ):
                start = number
                break
    key = re.escape(names[-1])
    for number, line in enumerate(lines[start:], start):
        if re.search(rf"(^|[{{,\s])\"?{key}\"?\s*=", line):
            return number + 1
    return None


def validate(model: type[Model], data: dict[str, Any], path: Path, text: str) -> Model:
    """Validate data against a pydantic model; turn the first errors into one clear ConfigError."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            loc = _without_union_tags(data, tuple(error["loc"]))
            key = ".".join(str(part) for part in loc) or "(top level)"
            line = key_line(text, loc)
            where = f"line {line}: " if line else ""
            problems.append(f"{path}: {where}{key}: {_describe(error, is_secret(key))}")
        raise ConfigError("\n".join(problems)) from None


def field_problems(error: pydantic.ValidationError, data: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted key, what is wrong) for each of a validation's errors, secrets never shown."""
    problems = []
    for item in error.errors()[:50]:
        key = ".".join(str(part) for part in _without_union_tags(data, tuple(item["loc"])))
        key = key or "(top level)"
        problems.append((key, _describe(item, is_secret(key))))
    return problems


def _without_union_tags(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the tag pydantic adds for tagged unions: 'accounts.x.exotel.sid' -> 'accounts.x.sid'."""
    kept: list[int | str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        kept.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return tuple(kept)


_SECRET_WORDS = ("secret", "token", "password", "api_key", "apikey", "auth")


def is_secret(key: str) -> bool:
    """Whether a configuration key holds a credential whose value must never be shown."""
    last = key.rsplit(".", 1)[-1].lower()
    return any(word in last for word in _SECRET_WORDS)


def _describe(error: Any, secret: bool) -> str:
    """Say what was expected and what was found, without pydantic's URLs or secret values."""
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if secret:
        return message
    if kind not in ("value_error",) and not isinstance(given, dict | list):
        return f"{message}, got {given!r}"
    return message
