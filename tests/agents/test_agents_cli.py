"""`replicas agents install|check`, without installing anything."""

from __future__ import annotations

from typer.testing import CliRunner

from replicas.cli.agents import app

runner = CliRunner()


def test_check_lists_every_agent_and_what_is_missing(tmp_path):
    result = runner.invoke(app, ["check", "--tools-dir", str(tmp_path)])
    assert result.exit_code == 1
    for agent in ("claude", "codex", "opencode", "cursor"):
        assert agent in result.output
    assert "@anthropic-ai/claude-code is not installed" in result.output
    assert "pinned 0.169.0" in result.output


def test_check_reads_the_tools_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICAS_TOOLS_DIR", str(tmp_path / "elsewhere"))
    result = runner.invoke(app, ["check"])
    assert str(tmp_path / "elsewhere" / "codex") in result.output


def test_install_refuses_an_unknown_agent(tmp_path):
    result = runner.invoke(app, ["install", "--tools-dir", str(tmp_path), "--only", "claude,vim"])
    assert result.exit_code == 2
    assert "unknown agent(s): vim" in result.output
