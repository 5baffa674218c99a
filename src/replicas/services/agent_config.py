"""Agent configuration as data: each CLI's MCP server format, skills folders and instruction files.

Pure functions only (no I/O), so that `provisioning` decides where and when to write, and the tests
check each format without a workspace. An MCP server comes in as the contract's shape:
`(transport, config)` with stdio `{command, args, env}` or http/sse `{url, headers}`.

Where each agent reads its configuration (paths relative to the workspace home):

    Claude Code   ~/.claude.json `mcpServers`        ~/.claude/skills/<slug>/   ~/.claude/CLAUDE.md
    Codex         ~/.codex/config.toml `mcp_servers` ~/.codex/skills/<slug>/    ~/.codex/AGENTS.md
                  (CODEX_HOME is ~/.codex)           ~/.agents/skills/<slug>/
    opencode      ~/.config/opencode/opencode.json   (reads ~/.claude/skills)   ~/.config/opencode/AGENTS.md
                  `mcp` (XDG_CONFIG_HOME is ~/.config; the driver's OPENCODE_CONFIG_CONTENT merges over it)

Codex has read user skills from `$CODEX_HOME/skills` and, in later releases, from `~/.agents/skills`
(the cross-agent location); skills go to both, which costs a copy and works with either version.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

CLAUDE_CONFIG = ".claude.json"
CODEX_CONFIG = ".codex/config.toml"
OPENCODE_CONFIG = ".config/opencode/opencode.json"
OPENCODE_SCHEMA = "https://opencode.ai/config.json"

SKILL_DIRS = (".claude/skills", ".codex/skills", ".agents/skills")
INSTRUCTION_FILES = (".claude/CLAUDE.md", ".codex/AGENTS.md", ".config/opencode/AGENTS.md")

PROMPT_BEGIN = "<!-- replicas:system-prompt -->"
PROMPT_END = "<!-- /replicas:system-prompt -->"

Mcps = Mapping[str, tuple[str, Mapping[str, Any]]]


# --- Claude Code -----------------------------------------------------------------------------------

def claude_mcp_server(transport: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """One `mcpServers` entry of `~/.claude.json`."""
    if transport == "stdio":
        return {"type": "stdio", "command": config["command"], "args": list(config.get("args") or []),
                "env": dict(config.get("env") or {})}
    return {"type": transport, "url": config["url"], "headers": dict(config.get("headers") or {})}


def merge_claude_config(existing: Mapping[str, Any] | None, mcps: Mcps) -> dict[str, Any]:
    """`existing` (the parsed `~/.claude.json`, or None) with `mcps` set in `mcpServers`.

    Every other key, and servers of other names, are kept: Claude Code stores its own state there."""
    merged = dict(existing or {})
    servers = dict(merged.get("mcpServers") or {})
    servers.update({name: claude_mcp_server(t, c) for name, (t, c) in mcps.items()})
    merged["mcpServers"] = servers
    return merged


# --- Codex -----------------------------------------------------------------------------------------

def codex_mcp_server(transport: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """One `[mcp_servers.<name>]` table of Codex's `config.toml`.

    Codex speaks stdio and streamable HTTP; an `sse` server is given as its URL, which servers that
    offer both transports answer."""
    if transport == "stdio":
        table: dict[str, Any] = {"command": config["command"], "args": list(config.get("args") or [])}
        if config.get("env"):
            table["env"] = dict(config["env"])
        return table
    table = {"url": config["url"]}
    if config.get("headers"):
        table["http_headers"] = dict(config["headers"])
    return table


def merge_codex_config(existing: Mapping[str, Any] | None, mcps: Mcps) -> dict[str, Any]:
    """`existing` (the parsed `config.toml`, or None) with `mcps` set in `mcp_servers`."""
    merged = dict(existing or {})
    servers = dict(merged.get("mcp_servers") or {})
    servers.update({name: codex_mcp_server(t, c) for name, (t, c) in mcps.items()})
    merged["mcp_servers"] = servers
    return merged


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(value: str) -> str:
    # JSON escapes are valid TOML basic-string escapes, except that TOML has no \u for surrogates;
    # ensure_ascii=False keeps every non-ASCII character literal, so none are produced.
    return json.dumps(value, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _toml_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_array(v)]
    for key, value in scalars:
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        sub = [*path, _toml_key(key)]
        if isinstance(value, Mapping):
            lines.extend(["", f"[{'.'.join(sub)}]"])
            _toml_table(value, sub, lines)
        elif _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(sub)}]]"])
                _toml_table(item, sub, lines)


def dumps_toml(document: Mapping[str, Any]) -> str:
    """A TOML document for plain data: tables, arrays of tables, strings, numbers, booleans, arrays.

    (Dates, which `tomllib` reads as datetime objects, are not supported: Codex's config has none.)"""
    lines: list[str] = []
    _toml_table(document, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


# --- opencode --------------------------------------------------------------------------------------

def opencode_mcp_server(transport: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of opencode's `mcp` section: `local` for stdio, `remote` for http and sse."""
    if transport == "stdio":
        return {"type": "local", "command": [config["command"], *(config.get("args") or [])],
                "environment": dict(config.get("env") or {}), "enabled": True}
    return {"type": "remote", "url": config["url"], "headers": dict(config.get("headers") or {}),
            "enabled": True}


def merge_opencode_config(existing: Mapping[str, Any] | None, mcps: Mcps) -> dict[str, Any]:
    """`existing` (the parsed `opencode.json`, or None) with `mcps` set in `mcp`."""
    merged = dict(existing or {})
    merged.setdefault("$schema", OPENCODE_SCHEMA)
    servers = dict(merged.get("mcp") or {})
    servers.update({name: opencode_mcp_server(t, c) for name, (t, c) in mcps.items()})
    merged["mcp"] = servers
    return merged


# --- Instructions ----------------------------------------------------------------------------------

def merge_instructions(existing: str | None, prompt: str) -> str:
    """An instructions file holding `prompt` in a marked block: replaced on a second provisioning,
    appended after whatever else the file holds (an environment file may have written it)."""
    block = f"{PROMPT_BEGIN}\n{prompt.rstrip()}\n{PROMPT_END}\n"
    if not existing:
        return block
    start, end = existing.find(PROMPT_BEGIN), existing.find(PROMPT_END)
    if start != -1 and end > start:
        return existing[:start] + block + existing[end + len(PROMPT_END):].lstrip("\n")
    return existing.rstrip("\n") + "\n\n" + block


def join_prompts(parts: list[str | None]) -> str:
    """Non-blank prompt parts in order, separated by a blank line."""
    return "\n\n".join(part.strip() for part in parts if part and part.strip())
