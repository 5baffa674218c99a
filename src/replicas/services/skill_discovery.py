"""Finding agent skills, agents, commands, prompts and plugins in a git tree.

Two layers. Pure functions decide what a path is (`classify_repo_path`, `classify_registry_path`),
read YAML front matter and build links; they are tested on plain lists of paths. `discover` applies
them to a bare mirror kept under the data dir (through `services.git`) and never raises for a git
failure: it answers `(skills, error)` so that callers can show a partial list with the reason.

Repository conventions (paths relative to the repository root):

    <fw>/skills/**/SKILL.md                     skill    (<fw> is .claude, .codex, .cursor or .agents)
    <fw>/plugins/<name>/plugin.json             plugin   (also <fw>/plugins/<name>/.claude-plugin/plugin.json)
    .claude-plugin/plugin.json                  plugin   (framework claude)
    .claude/agents/**/*.md                      agent
    .claude/commands/**/*.md                    command
    .cursor/commands/*.md                       command
    .codex/prompts/*.md                         prompt
    .cursor/rules/**/*.mdc|*.md                 prompt

A skill registry is simpler: every `SKILL.md`, at any depth, is a skill.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import yaml

from replicas.services import git

FRAMEWORK_DIRS = {".claude": "claude", ".codex": "codex", ".cursor": "cursor", ".agents": "agents"}
SKILL_FILE = "SKILL.md"
# Bounds the work one listing does on a pathological tree; the response says when it was cut.
MAX_ENTRIES = 500
# Front matter beyond this is not metadata; it is not worth parsing.
MAX_FRONT_MATTER = 64 * 1024
_READ_CONCURRENCY = 8
_GITHUB = re.compile(r"^https?://(?:www\.)?github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", re.IGNORECASE)


@dataclass(frozen=True)
class PathMatch:
    """What a path in the tree is, before its contents are read."""

    path: str
    framework: str
    kind: str
    default_name: str


@dataclass(frozen=True)
class Source:
    """A tree to scan: a bound repository or a skill registry, and the mirror that holds it."""

    id: str
    full_name: str
    url: str
    branch: str
    mirror_key: str
    credential: str | None = None

    @property
    def root_name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RepoSkill:
    """A discovered file, shaped as the contract's RepoSkill."""

    id: str
    repository_id: str
    repository_full_name: str
    branch: str
    path: str
    name: str
    description: str | None
    framework: str
    kind: str
    html_url: str


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0] if "." in filename else filename


def _is_markdown(filename: str, *extensions: str) -> bool:
    # A README next to agents or commands documents them; it is not one of them.
    return filename.lower().endswith(extensions or (".md",)) and _stem(filename).lower() != "readme"


def classify_repo_path(path: str, root_name: str = "") -> PathMatch | None:
    """Classify one path of a bound repository's tree; None for anything that is not agent config."""
    parts = path.split("/")
    if parts == [".claude-plugin", "plugin.json"]:
        return PathMatch(path, "claude", "plugin", root_name or "plugin")
    framework = FRAMEWORK_DIRS.get(parts[0])
    if framework is None or len(parts) < 3:
        return None
    section, rest, filename = parts[1], parts[2:], parts[-1]
    if section == "skills" and filename == SKILL_FILE and len(rest) >= 2:
        return PathMatch(path, framework, "skill", parts[-2])
    if section == "plugins" and rest[1:] in (["plugin.json"], [".claude-plugin", "plugin.json"]):
        return PathMatch(path, framework, "plugin", rest[0])
    if framework == "claude" and section == "agents" and _is_markdown(filename):
        return PathMatch(path, framework, "agent", _stem(filename))
    if framework == "claude" and section == "commands" and _is_markdown(filename):
        return PathMatch(path, framework, "command", _stem(filename))
    if framework == "cursor" and section == "commands" and len(rest) == 1 and _is_markdown(filename):
        return PathMatch(path, framework, "command", _stem(filename))
    if framework == "codex" and section == "prompts" and len(rest) == 1 and _is_markdown(filename):
        return PathMatch(path, framework, "prompt", _stem(filename))
    if framework == "cursor" and section == "rules" and _is_markdown(filename, ".mdc", ".md"):
        return PathMatch(path, framework, "prompt", _stem(filename))
    return None


def classify_registry_path(path: str, root_name: str = "") -> PathMatch | None:
    """In a skill registry every SKILL.md is a skill, named after its folder (the repo's, at the root)."""
    parts = path.split("/")
    if parts[-1] != SKILL_FILE:
        return None
    framework = FRAMEWORK_DIRS.get(parts[0], "agents") if len(parts) > 1 else "agents"
    return PathMatch(path, framework, "skill", parts[-2] if len(parts) > 1 else (root_name or "skill"))


def front_matter(text: str) -> dict:
    """The YAML front matter of a Markdown file as a dict; {} when absent or malformed."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            block = "\n".join(lines[1:index])
            if len(block) > MAX_FRONT_MATTER:
                return {}
            try:
                data = yaml.safe_load(block)
            except yaml.YAMLError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _text_field(data: dict, key: str) -> str | None:
    """A string metadata field on one line; other types are ignored rather than stringified."""
    value = data.get(key)
    if not isinstance(value, str):
        return None
    return " ".join(value.split()) or None


def describe(match: PathMatch, content: str | None) -> tuple[str, str | None]:
    """Name and description from the file's metadata, falling back to the folder or file name."""
    data: dict = {}
    if content:
        if match.kind == "plugin":
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
            data = parsed if isinstance(parsed, dict) else {}
        else:
            data = front_matter(content)
    return _text_field(data, "name") or match.default_name, _text_field(data, "description")


def repository_name(url: str) -> str:
    """The last path component without `.git`: `https://github.com/acme/skills.git` → `skills`."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    return parts[-1].removesuffix(".git") if parts else urlparse(url).netloc


def repository_full_name(url: str) -> str:
    """The last two path components, `owner/repo` for a GitHub URL."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    if not parts:
        return urlparse(url).netloc
    parts[-1] = parts[-1].removesuffix(".git")
    return "/".join(parts[-2:])


def html_url(repository_url: str, branch: str, path: str) -> str:
    """A GitHub blob link for GitHub repositories; elsewhere the repository URL with `#<branch>:<path>`."""
    url = git.display_url(repository_url)
    quoted_branch, quoted_path = quote(branch, safe="/"), quote(path, safe="/")
    match = _GITHUB.match(url)
    if match:
        return f"https://github.com/{match[1]}/{match[2]}/blob/{quoted_branch}/{quoted_path}"
    return f"{url.split('#', 1)[0]}#{quoted_branch}:{quoted_path}"


def _reason(exc: Exception) -> str:
    return (exc.stderr if isinstance(exc, git.GitError) else "") or str(exc) or type(exc).__name__


async def _refresh_mirror(data_dir: Path, source: Source) -> tuple[Path | None, str | None]:
    """Fetch the mirror; on failure keep using a mirror fetched earlier, and say so."""
    try:
        return await git.ensure_mirror(data_dir, source.mirror_key, source.url, source.credential), None
    except (git.GitError, OSError) as exc:  # OSError: no git binary, a full disk, a broken data dir
        stale = git.mirror_path(data_dir, source.mirror_key)
        if (stale / "HEAD").exists():
            return stale, (f"Could not refresh {source.full_name} ({_reason(exc)}); "
                           "showing the contents fetched last")
        return None, f"Could not fetch {source.full_name}: {_reason(exc)}"


async def _read(mirror: Path, ref: str, path: str, limit: asyncio.Semaphore) -> str | None:
    async with limit:
        try:
            return await git.read_file(mirror, ref, path)
        except (git.GitError, OSError):
            return None


async def discover(data_dir: Path, source: Source, classify) -> tuple[list[RepoSkill], str | None]:
    """Mirror `source`, list its branch and describe every path `classify` accepts.

    Answers `(skills, error)`: `error` explains a failure or a partial answer, and is None otherwise.
    """
    mirror, error = await _refresh_mirror(data_dir, source)
    if mirror is None:
        return [], error
    ref = f"refs/heads/{source.branch}"
    try:
        paths = await git.list_files(mirror, ref)
    except (git.GitError, OSError) as exc:
        return [], f"Could not read branch {source.branch!r} of {source.full_name}: {_reason(exc)}"
    matches = sorted((m for p in paths if (m := classify(p, source.root_name))), key=lambda m: m.path)
    if len(matches) > MAX_ENTRIES:
        note = f"{source.full_name} has {len(matches)} entries; showing the first {MAX_ENTRIES}"
        error = f"{error}; {note}" if error else note
        matches = matches[:MAX_ENTRIES]
    limit = asyncio.Semaphore(_READ_CONCURRENCY)
    contents = await asyncio.gather(*(_read(mirror, ref, m.path, limit) for m in matches))
    skills = []
    for match, content in zip(matches, contents, strict=True):
        name, description = describe(match, content)
        skills.append(RepoSkill(
            id=f"{source.id}:{match.path}",
            repository_id=source.id,
            repository_full_name=source.full_name,
            branch=source.branch,
            path=match.path,
            name=name,
            description=description,
            framework=match.framework,
            kind=match.kind,
            html_url=html_url(source.url, source.branch, match.path),
        ))
    return skills, error

