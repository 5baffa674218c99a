"""The repository configuration file: `replicas.json`, `replicas.yaml` or `replicas.yml` (spec §5).

Only the first file found at the repository root is used, in that order. Known keys are checked and
normalised (`warmHook` / `startHook` get their defaults); unknown keys are ignored and never an error
(spec §10 #29). A file that cannot be parsed, or whose known keys have the wrong shape, raises
`RepoConfigError` with a message that names the file, the key and, for syntax errors, the line.

Neutral ground: the engine reads the file from a checkout inside the workspace, the control plane
from a mirror (`services/repo_config_reader.py`); both parse it here, so neither layer imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

CONFIG_FILES = ("replicas.json", "replicas.yaml", "replicas.yml")
DEFAULT_HOOK_TIMEOUT_MS = 300_000


class RepoConfigError(ValueError):
    """The configuration file `filename` is malformed; the message says where and why."""

    def __init__(self, message: str, filename: str):
        self.filename = filename
        super().__init__(message)


@dataclass(frozen=True)
class HookSpec:
    """A repository-level hook: commands run in the repository's directory.

    `timeout` is in milliseconds, per command when `separate` (each command in its own shell), or for
    the whole joined script otherwise."""

    commands: list[str]
    timeout: int = DEFAULT_HOOK_TIMEOUT_MS
    separate: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RepoConfig:
    system_prompt: str | None = None
    warm_hook: HookSpec | None = None
    start_hook: HookSpec | None = None


def find_config_file(paths: Iterable[str]) -> str | None:
    """The configuration file to use among a tree's paths: the first of CONFIG_FILES at the root."""
    present = set(paths)
    return next((name for name in CONFIG_FILES if name in present), None)


def _load(text: str, filename: str) -> Any:
    if filename.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise RepoConfigError(f"{filename}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                  f"{exc.msg}", filename) from None
    # Imported here, not at the top: PyYAML costs every engine start about 10 ms, and most repositories
    # have no replicas.yaml.
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RepoConfigError(f"{filename}: invalid YAML{where}: {problem}", filename) from None


def _hook(value: Any, filename: str, key: str) -> HookSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RepoConfigError(f"{filename}: {key} must be an object with `commands`", filename)
    commands = value.get("commands")
    if commands is None:
        commands = []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise RepoConfigError(f"{filename}: {key}.commands must be a list of strings", filename)
    timeout = value.get("timeout")
    if timeout is None:
        timeout = DEFAULT_HOOK_TIMEOUT_MS
    # bool is an int in Python; `timeout: true` is a mistake, not one millisecond.
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise RepoConfigError(f"{filename}: {key}.timeout must be a positive integer (milliseconds)",
                              filename)
    separate = value.get("separate")
    if separate is None:
        separate = True
    if not isinstance(separate, bool):
        raise RepoConfigError(f"{filename}: {key}.separate must be true or false", filename)
    return HookSpec(commands=list(commands), timeout=timeout, separate=separate)


def parse_repo_config(text: str, filename: str) -> RepoConfig:
    """Parse one configuration file's text; `filename` picks the syntax (JSON or YAML)."""
    data = _load(text, filename)
    if data is None:
        # An empty YAML file configures nothing.
        return RepoConfig()
    if not isinstance(data, dict):
        raise RepoConfigError(f"{filename}: the top level must be an object (mapping)", filename)
    prompt = data.get("systemPrompt")
    if prompt is not None and not isinstance(prompt, str):
        raise RepoConfigError(f"{filename}: systemPrompt must be a string", filename)
    return RepoConfig(
        system_prompt=prompt,
        warm_hook=_hook(data.get("warmHook"), filename, "warmHook"),
        start_hook=_hook(data.get("startHook"), filename, "startHook"),
    )

