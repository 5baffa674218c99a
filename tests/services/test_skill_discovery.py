"""Skill discovery's pure layer: what each path of a tree is, front matter, names and links."""

from __future__ import annotations

from replicas.services.skill_discovery import (
    PathMatch,
    classify_registry_path,
    classify_repo_path,
    describe,
    front_matter,
    html_url,
    repository_full_name,
    repository_name,
)

TREE = [
    "README.md",
    "src/app.py",
    ".claude/settings.json",
    ".claude/skills/release-notes/SKILL.md",
    ".claude/skills/release-notes/templates/notes.md",
    ".claude/skills/infra/terraform-plan/SKILL.md",
    ".claude/agents/reviewer.md",
    ".claude/agents/README.md",
    ".claude/agents/db/migrator.md",
    ".claude/commands/commit.md",
    ".claude/commands/frontend/component.md",
    ".claude/plugins/deploy/plugin.json",
    ".claude-plugin/plugin.json",
    ".codex/prompts/refactor.md",
    ".codex/prompts/nested/ignored.md",
    ".codex/skills/bisect/SKILL.md",
    ".cursor/rules/python.mdc",
    ".cursor/rules/frontend/react.md",
    ".cursor/rules/notes.txt",
    ".cursor/commands/lint.md",
    ".cursor/commands/nested/ignored.md",
    ".agents/skills/triage/SKILL.md",
    ".agents/plugins/ops/.claude-plugin/plugin.json",
    ".agents/skills/SKILL.md",
    "docs/.claude/agents/not-at-root.md",
    "skills/pdf/SKILL.md",
]


def _classified(paths, classify, root_name="app"):
    return {m.path: (m.framework, m.kind, m.default_name) for p in paths if (m := classify(p, root_name))}


def test_repo_paths_map_to_framework_kind_and_default_name():
    assert _classified(TREE, classify_repo_path) == {
        ".claude/skills/release-notes/SKILL.md": ("claude", "skill", "release-notes"),
        ".claude/skills/infra/terraform-plan/SKILL.md": ("claude", "skill", "terraform-plan"),
        ".claude/agents/reviewer.md": ("claude", "agent", "reviewer"),
        ".claude/agents/db/migrator.md": ("claude", "agent", "migrator"),
        ".claude/commands/commit.md": ("claude", "command", "commit"),
        ".claude/commands/frontend/component.md": ("claude", "command", "component"),
        ".claude/plugins/deploy/plugin.json": ("claude", "plugin", "deploy"),
        ".claude-plugin/plugin.json": ("claude", "plugin", "app"),
        ".codex/prompts/refactor.md": ("codex", "prompt", "refactor"),
        ".codex/skills/bisect/SKILL.md": ("codex", "skill", "bisect"),
        ".cursor/rules/python.mdc": ("cursor", "prompt", "python"),
        ".cursor/rules/frontend/react.md": ("cursor", "prompt", "react"),
        ".cursor/commands/lint.md": ("cursor", "command", "lint"),
        ".agents/skills/triage/SKILL.md": ("agents", "skill", "triage"),
        ".agents/plugins/ops/.claude-plugin/plugin.json": ("agents", "plugin", "ops"),
    }


def test_registry_treats_every_skill_md_as_a_skill_at_any_depth():
    paths = ["SKILL.md", "skills/pdf/SKILL.md", "a/b/c/SKILL.md", ".codex/skills/x/SKILL.md",
             "skills/pdf/reference.md", "skill.md"]
    assert _classified(paths, classify_registry_path, "toolbox") == {
        "SKILL.md": ("agents", "skill", "toolbox"),
        "skills/pdf/SKILL.md": ("agents", "skill", "pdf"),
        "a/b/c/SKILL.md": ("agents", "skill", "c"),
        ".codex/skills/x/SKILL.md": ("codex", "skill", "x"),
    }


def test_front_matter_is_read_and_bad_or_missing_front_matter_is_empty():
    text = "\ufeff---\nname: notes\ndescription: >\n  Draft release notes\n  from merged PRs.\n---\n# Body\n"
    assert front_matter(text) == {"name": "notes", "description": "Draft release notes from merged PRs."}
    assert front_matter("# No front matter\n---\nname: x\n---\n") == {}
    assert front_matter("---\nname: [unclosed\n---\n") == {}
    assert front_matter("---\njust a string\n---\n") == {}
    assert front_matter("---\nname: never closed\n") == {}


def test_describe_prefers_metadata_and_falls_back_to_the_folder_or_file_name():
    skill = PathMatch("s/pdf/SKILL.md", "agents", "skill", "pdf")
    assert describe(skill, "---\nname: PDF tools\ndescription: |\n  Fill forms.\n  Merge files.\n---\n") == (
        "PDF tools", "Fill forms. Merge files.")
    assert describe(skill, "# just markdown") == ("pdf", None)
    assert describe(skill, None) == ("pdf", None)
    # Only strings count: a nested structure is not stringified into a name.
    assert describe(skill, "---\nname: {a: 1}\ndescription: 42\n---\n") == ("pdf", None)
    plugin = PathMatch(".claude-plugin/plugin.json", "claude", "plugin", "app")
    assert describe(plugin, '{"name": "deploy-kit", "description": "Ship it"}') == ("deploy-kit", "Ship it")
    assert describe(plugin, "not json") == ("app", None)


def test_repository_names_come_from_the_url():
    assert repository_name("https://github.com/acme/skills.git") == "skills"
    assert repository_full_name("https://github.com/acme/skills.git") == "acme/skills"
    assert repository_full_name("https://github.com/acme/skills/") == "acme/skills"
    assert repository_full_name("file:///srv/git/team/toolbox") == "team/toolbox"
    assert repository_name("file:///srv/git/team/toolbox") == "toolbox"


def test_html_url_links_github_blobs_and_otherwise_appends_branch_and_path():
    path = ".claude/skills/release notes/SKILL.md"
    assert html_url("https://github.com/acme/app.git", "main", path) == (
        "https://github.com/acme/app/blob/main/.claude/skills/release%20notes/SKILL.md")
    assert html_url("https://x-access-token:secret@github.com/acme/app", "release/v2", "a.md") == (
        "https://github.com/acme/app/blob/release/v2/a.md")
    assert html_url("file:///srv/git/app", "main", path) == (
        "file:///srv/git/app#main:.claude/skills/release%20notes/SKILL.md")
    assert html_url("https://user:pw@git.example.com/team/app.git", "main", "a.md") == (
        "https://git.example.com/team/app.git#main:a.md")
