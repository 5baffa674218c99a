"""replicas.json / replicas.yaml parsing (spec §5): defaults, precedence, unknown keys, clear errors."""

from __future__ import annotations

import json

import pytest

from replicas.repo_config import (
    DEFAULT_HOOK_TIMEOUT_MS,
    HookSpec,
    RepoConfig,
    RepoConfigError,
    find_config_file,
    parse_repo_config,
)
from replicas.services import git
from replicas.services.repo_config_reader import read_repo_config


def test_json_example_from_the_docs_parses_with_defaults():
    text = json.dumps({"systemPrompt": "Be brief.",
                       "warmHook": {"timeout": 120000, "commands": ["npm install", "npm run build"]},
                       "startHook": {"commands": ["./scripts/setup.sh"]}})
    config = parse_repo_config(text, "replicas.json")
    assert config.system_prompt == "Be brief."
    assert config.warm_hook == HookSpec(commands=["npm install", "npm run build"], timeout=120000, separate=True)
    assert config.start_hook == HookSpec(commands=["./scripts/setup.sh"], timeout=DEFAULT_HOOK_TIMEOUT_MS,
                                         separate=True)
    assert config.start_hook.as_dict() == {"commands": ["./scripts/setup.sh"], "timeout": 300000, "separate": True}


def test_yaml_block_scalars_separate_false_and_unknown_keys_are_ignored():
    text = (
        "systemPrompt: |\n  Line one.\n  Line two.\n"
        "organization: acme\n"          # unknown keys never fail (spec §10 #29)
        "ports: [3000]\n"
        "warmHook:\n  separate: false\n  commands:\n    - export A=1\n    - echo $A\n"
    )
    config = parse_repo_config(text, "replicas.yaml")
    assert config.system_prompt == "Line one.\nLine two.\n"
    assert config.warm_hook == HookSpec(commands=["export A=1", "echo $A"], separate=False)
    assert config.start_hook is None


def test_empty_yaml_and_hooks_without_commands():
    assert parse_repo_config("", "replicas.yml") == RepoConfig()
    assert parse_repo_config('{"startHook": {}}', "replicas.json").start_hook == HookSpec(commands=[])
    assert parse_repo_config('{"warmHook": null}', "replicas.json").warm_hook is None


@pytest.mark.parametrize(("text", "filename", "fragment"), [
    ('{"warmHook": {"commands": ["a"],}', "replicas.json", "replicas.json: invalid JSON at line 1"),
    ("warmHook:\n  commands: [a\n", "replicas.yaml", "replicas.yaml: invalid YAML at line"),
    ("- just\n- a list\n", "replicas.yml", "top level must be an object"),
    ('{"warmHook": ["npm ci"]}', "replicas.json", "warmHook must be an object"),
    ('{"warmHook": {"commands": "npm ci"}}', "replicas.json", "warmHook.commands must be a list of strings"),
    ('{"startHook": {"commands": [1, 2]}}', "replicas.json", "startHook.commands must be a list of strings"),
    ('{"startHook": {"commands": [], "timeout": -5}}', "replicas.json", "startHook.timeout must be a positive"),
    ('{"startHook": {"commands": [], "timeout": true}}', "replicas.json", "startHook.timeout must be a positive"),
    ('{"warmHook": {"commands": [], "separate": "no"}}', "replicas.json", "warmHook.separate must be true or false"),
    ('{"systemPrompt": 42}', "replicas.json", "systemPrompt must be a string"),
])
def test_malformed_files_raise_an_error_naming_file_and_key(text, filename, fragment):
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config(text, filename)
    assert fragment in str(caught.value)
    assert caught.value.filename == filename


def test_only_the_first_root_file_in_documented_order_is_used():
    assert find_config_file(["replicas.yml", "replicas.yaml", "replicas.json"]) == "replicas.json"
    assert find_config_file(["README.md", "replicas.yml", "replicas.yaml"]) == "replicas.yaml"
    assert find_config_file(["docs/replicas.json", "README.md"]) is None


async def test_read_repo_config_from_a_real_bare_mirror(make_git_repo, tmp_path):
    source = make_git_repo("app", {"replicas.yml": "startHook:\n  commands: [make dev]\n",
                                   "sub/replicas.json": "{broken", "README.md": "# app\n"})
    mirror = await git.ensure_mirror(tmp_path / "data", "app", source.as_uri())
    filename, config = await read_repo_config(mirror, "refs/heads/main")
    assert filename == "replicas.yml"
    assert config.start_hook == HookSpec(commands=["make dev"])

    bare = make_git_repo("bare")
    mirror = await git.ensure_mirror(tmp_path / "data", "bare", bare.as_uri())
    assert await read_repo_config(mirror, "refs/heads/main") == (None, None)
    with pytest.raises(git.GitError):
        await read_repo_config(mirror, "refs/heads/no-such-branch")
