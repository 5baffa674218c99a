"""What the store can hold as sent: the check both the API's request bodies and the custom-webhook receiver use.

JSON parsing (Python's and so FastAPI's) accepts values that no database write or JSON response can carry:
an unpaired surrogate (`"\\ud800"`: not encodable as UTF-8, on SQLite or PostgreSQL), a NUL character
(`"\\u0000"`: PostgreSQL text refuses it), `NaN`/`Infinity` (not JSON on the way out) and nesting deep
enough to exhaust the stack when serialized. Found by the schema fuzzer as 500s; callers refuse (400) or
wrap such input instead.
"""

from __future__ import annotations

import math
from typing import Any

MAX_NESTING = 100


def unstorable(value: Any, *, nul_allowed: bool = False) -> str | None:
    """Why decoded JSON `value` cannot be stored as sent, naming where (`a.b.0`), or None when it can.

    `nul_allowed` for values kept only as JSON (which escapes NUL) and never as a text column."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            reason = _text_problem(item, nul_allowed)
        elif isinstance(item, float):
            reason = None if math.isfinite(item) else "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return _at(where, f"nested more than {MAX_NESTING} levels deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (reason := _text_problem(key, nul_allowed)):
                    return _at(where, f"a key: {reason}")
                stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
            continue
        else:
            continue
        if reason:
            return _at(where, reason)
    return None


def _text_problem(text: str, nul_allowed: bool) -> str | None:
    if not nul_allowed and "\x00" in text:
        return "text must not contain NUL characters (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text must not contain unpaired surrogates"
    return None


def _at(where: str, reason: str) -> str:
    return f"{where}: {reason}" if where else reason
