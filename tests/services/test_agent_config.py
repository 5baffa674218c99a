"""Each agent's MCP config format, the TOML writer and instruction-file merging, with no workspace."""

from __future__ import annotations

import tomllib

from replicas.services import agent_config

MCPS = {
    "files": ("stdio", {"command": "npx", "args": ["-y", "@mcp/files", "/tmp"], "env": {"TOKEN": 'a"b\\c'}}),
    "search": ("http", {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer t"}}),
    "events": ("sse", {"url": "https://mcp.example.com/sse", "headers": {}}),
}


def test_claude_servers_have_their_type_and_existing_keys_are_kept():
    existing = {"numStartups": 3, "mcpServers": {"mine": {"type": "stdio", "command": "x"}}}
    merged = agent_config.merge_claude_config(existing, MCPS)
    assert merged["numStartups"] == 3
    assert merged["mcpServers"]["mine"] == {"type": "stdio", "command": "x"}
    assert merged["mcpServers"]["files"] == {"type": "stdio", "command": "npx",
                                             "args": ["-y", "@mcp/files", "/tmp"], "env": {"TOKEN": 'a"b\\c'}}
    assert merged["mcpServers"]["search"] == {"type": "http", "url": "https://mcp.example.com/mcp",
                                              "headers": {"Authorization": "Bearer t"}}
    assert merged["mcpServers"]["events"]["type"] == "sse"


def test_codex_config_is_valid_toml_with_mcp_servers_and_existing_settings():
    existing = {"model": "gpt-5", "features": {"web": True}, "profiles": {"a": {"model_reasoning_effort": "high"}}}
    text = agent_config.dumps_toml(agent_config.merge_codex_config(existing, MCPS))
    parsed = tomllib.loads(text)
    assert parsed["model"] == "gpt-5" and parsed["features"] == {"web": True}
    assert parsed["profiles"]["a"]["model_reasoning_effort"] == "high"
    servers = parsed["mcp_servers"]
    assert servers["files"] == {"command": "npx", "args": ["-y", "@mcp/files", "/tmp"], "env": {"TOKEN": 'a"b\\c'}}
    assert servers["search"] == {"url": "https://mcp.example.com/mcp",
                                 "http_headers": {"Authorization": "Bearer t"}}
    assert servers["events"] == {"url": "https://mcp.example.com/sse"}


def test_toml_writer_round_trips_plain_data():
    document = {"a": 1, "b": 2.5, "c": "ünï\n\"q\"", "d": [1, 2], "weird key": False,
                "t": {"x": {"y": "z"}, "e": {}}, "arr": [{"n": 1}, {"n": 2, "sub": {"k": "v"}}]}
    assert tomllib.loads(agent_config.dumps_toml(document)) == document


def test_opencode_uses_local_command_lists_and_remote_urls():
    merged = agent_config.merge_opencode_config({"theme": "dark"}, MCPS)
    assert merged["theme"] == "dark" and merged["$schema"] == agent_config.OPENCODE_SCHEMA
    assert merged["mcp"]["files"] == {"type": "local", "command": ["npx", "-y", "@mcp/files", "/tmp"],
                                      "environment": {"TOKEN": 'a"b\\c'}, "enabled": True}
    assert merged["mcp"]["search"] == {"type": "remote", "url": "https://mcp.example.com/mcp",
                                       "headers": {"Authorization": "Bearer t"}, "enabled": True}


def test_instructions_are_appended_once_and_replaced_on_reprovisioning():
    first = agent_config.merge_instructions("# Mine\n", "Be brief.")
    assert first.startswith("# Mine\n") and "Be brief." in first
    second = agent_config.merge_instructions(first, "Be thorough.")
    assert "Be brief." not in second and second.count("Be thorough.") == 1 and second.startswith("# Mine\n")


def test_join_prompts_skips_blank_parts():
    assert agent_config.join_prompts([" A ", None, "", "B"]) == "A\n\nB"
