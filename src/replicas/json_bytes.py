"""Compact JSON as bytes, for the hot paths: API response bodies and SSE frames.

orjson writes the same JSON as `json.dumps(..., separators=(",", ":"), ensure_ascii=False)` in a tenth of the
time: the same keys in the same order, `null`s, numbers and strings (non-ASCII as UTF-8, which every JSON
parser reads as it reads `\\uXXXX`). What orjson refuses (an integer past 64 bits, a lone surrogate) the standard
library writes instead, escaped to ASCII, so no value that was answered before fails now.

    body = dumps({"replica": {...}})      # b'{"replica":{...}}'
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS
_LONG_DIGITS, _LONG_DIGIT_BYTES = re.compile(r"\d{19}"), re.compile(rb"\d{19}")


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; an object orjson does not know is written as its `str()`."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def loads(data: str | bytes) -> Any:
    """Parse JSON as `json.loads` does. Text with a run of 19+ digits goes to Python's parser (orjson would read an
    integer past 64 bits as a float), as does what orjson refuses (`NaN`, a lone surrogate)."""
    if (_LONG_DIGITS if isinstance(data, str) else _LONG_DIGIT_BYTES).search(data):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
