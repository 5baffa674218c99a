"""Provisioning a workspace's home from its environment (spec §3.8, §5.1): the control plane's part.

Two calls. `resolve_workspace_config` reads an environment with Global merged underneath it (and, for
a personal environment backed by a team one, the source in between) into a `ResolvedEnvironment`,
secrets decrypted in memory only. `provision_home` lays that out in a home directory, in the
documented order, and runs no user code:

    1. clone       every repository into ~/workspaces/<short name> from its mirror in the data dir; or, where
                   the workspace's disk is not this machine's (`clone_in_workspace`: Kubernetes), only the
                   plan of it for the workspace to clone from the origin itself (`clone_script`)
    2. variables   returned for the engine's environment and written to ~/.replicas/env (0600)
    3. files       at their ~/ paths; nothing may land outside the home, symlinks included
    4. MCP         into each agent's own config (see `agent_config`)
    5. skills      from a skill registry or a git source, into each agent's skills folder
    6. prompt      ~/.replicas/system-prompt.md and each agent's instructions file
    7. start hook  written to ~/.replicas/start-hook.sh for the engine to run (never run here)

The warm hooks (Global's and the environment's, resolved here as `warm_hooks`, then each checkout's
`warmHook`, read here into `ProvisionedRepo.warm_hook`) run after this, in the workspace's sandbox:
`services/warm_hooks.py`.

The home is the tenant's and may hold symlinks (a checkout, an earlier hook): every read and write in
it goes through `home_files`, which refuses a symlink on the way instead of following it out.

Every step is reported through `on_step(name, detail)` and timed in the result. What cannot be done
without faking it (a skill whose source cannot be fetched) becomes a warning, not an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shlex
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas import repo_config
from replicas.crypto import SecretBox
from replicas.runtime.base import RuntimeFailure
from replicas.services import agent_config, checkouts, git, home_files
from replicas.services import skill_discovery as discovery
from replicas.services.env_skills import bound_repositories, registry_mirror_key
from replicas.services.environments import ensure_global, resolve_environment
from replicas.services.hook_versions import START, WARM, active_hook
from replicas.services.principal import Principal
from replicas.services.repo_config_reader import read_repo_config
from replicas.store.models import (
    Environment,
    EnvironmentFile,
    EnvironmentMcp,
    EnvironmentSkill,
    EnvironmentSkillsRegistry,
    EnvironmentVariable,
)

AGENT_NAME = "Replicas Agent"
AGENT_EMAIL = "agent@replicas.local"
STEPS = ("clone", "variables", "files", "mcp", "skills", "system_prompt", "start_hook")

OnStep = Callable[[str, dict[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class ResolvedRepository:
    id: str
    name: str
    url: str
    default_branch: str
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ResolvedSkill:
    name: str
    slug: str
    source: str


@dataclass(frozen=True)
class ResolvedRegistry:
    id: str
    url: str
    full_name: str
    default_branch: str

    @property
    def mirror_key(self) -> str:
        return registry_mirror_key(self.id)


@dataclass
class ResolvedEnvironment:
    """An environment with its layers merged (Global, [source,] environment; the last one wins).

    Holds plaintext secrets: keep it in memory, never log or persist it (its repr hides them)."""

    environment_id: str
    name: str
    variables: dict[str, str] = field(default_factory=dict, repr=False)
    files: dict[str, str] = field(default_factory=dict, repr=False)
    mcps: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict, repr=False)
    skills: dict[str, ResolvedSkill] = field(default_factory=dict)
    registries: list[ResolvedRegistry] = field(default_factory=list)
    system_prompt: str = ""
    start_hooks: list[tuple[str, str]] = field(default_factory=list)
    # (hookName, script) per layer with an active warm hook, Global first: the contract's `global` hooks.
    warm_hooks: list[tuple[str, str]] = field(default_factory=list, repr=False)
    repositories: list[ResolvedRepository] = field(default_factory=list)


@dataclass
class ProvisionedRepo:
    name: str
    path: Path
    branch: str
    commit: str
    system_prompt: str | None = None
    start_hook: repo_config.HookSpec | None = None
    warm_hook: repo_config.HookSpec | None = None
    config_error: str | None = None  # its replicas.json|yaml could not be read (also a warning)


@dataclass
class ProvisionResult:
    """What `provision_home` did. `env` holds plaintext values for the engine's process environment."""

    repos: list[ProvisionedRepo] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    env_file: Path | None = None
    files: list[Path] = field(default_factory=list)
    mcp_configs: list[Path] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    system_prompt_path: Path | None = None
    start_hook_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # What the workspace clones itself (`clone_in_workspace`): {path (in the home), url, branch, commit}
    clone_plan: list[dict[str, str]] = field(default_factory=list)


# --- Resolution ------------------------------------------------------------------------------------

async def _rows(session: AsyncSession, model, env_ids: list) -> list:
    rows = []
    for env_id in env_ids:  # layer order: each later layer wins
        rows.extend(await session.scalars(select(model).where(model.environment_id == env_id)
                                          .order_by(model.created_at)))
    return rows


async def resolve_workspace_config(session: AsyncSession, box: SecretBox, principal: Principal,
                                   environment_ref: str) -> ResolvedEnvironment:
    """The environment `environment_ref` (a UUID or `global`) merged over Global, decrypted."""
    env = await resolve_environment(session, principal, environment_ref)
    layers: list[Environment] = [await ensure_global(session, principal)]
    binding = env
    if env.source_environment_id is not None:
        source = await session.get(Environment, env.source_environment_id)
        if source is not None and source.organization_id == principal.organization_id:
            layers.append(source)
            binding = source  # a source-backed personal env inherits the binding and prompt (locked)
    if not env.is_global:
        layers.append(env)
    ids = [layer.id for layer in layers]
    resolved = ResolvedEnvironment(environment_id=str(env.id), name=env.name)
    for row in await _rows(session, EnvironmentVariable, ids):
        resolved.variables[row.key] = box.decrypt(row.value_encrypted)
    for row in await _rows(session, EnvironmentFile, ids):
        resolved.files[row.path] = box.decrypt(row.content_encrypted)
    for row in await _rows(session, EnvironmentMcp, ids):
        resolved.mcps[row.name] = (row.transport, json.loads(box.decrypt(row.config_encrypted)))
    for row in await _rows(session, EnvironmentSkill, ids):
        resolved.skills[row.slug] = ResolvedSkill(name=row.name, slug=row.slug, source=row.source)
    seen_urls: set[str] = set()
    for row in reversed(await _rows(session, EnvironmentSkillsRegistry, ids)):  # nearest layer first
        if row.url not in seen_urls:
            seen_urls.add(row.url)
            resolved.registries.append(ResolvedRegistry(str(row.id), row.url, row.repository_full_name,
                                                         row.default_branch))
    prompts = [layers[0].system_prompt, binding.system_prompt if not binding.is_global else None]
    resolved.system_prompt = agent_config.join_prompts([*prompts, env.personal_preferences])
    for layer in layers:
        hook = await active_hook(session, principal, layer, START)
        if hook is not None and hook.content.strip():
            resolved.start_hooks.append(("global" if layer.is_global else str(layer.id), hook.content))
        warm = await active_hook(session, principal, layer, WARM)
        if warm is not None and warm.content.strip():
            resolved.warm_hooks.append(("global" if layer.is_global else layer.name, warm.content))
    for repo in await bound_repositories(session, principal, binding):
        credential = box.decrypt(repo.credential_encrypted) if repo.credential_encrypted else None
        resolved.repositories.append(ResolvedRepository(str(repo.id), repo.name, repo.url,
                                                        repo.default_branch, credential))
    return resolved


# --- Small file helpers (run in threads) -----------------------------------------------------------

def _read_json(home: Path, relative: str) -> dict | None:
    text = home_files.read_text(home, relative)
    if text is None:
        return None
    data = json.loads(text)
    return data if isinstance(data, dict) else None


def _read_toml(home: Path, relative: str) -> dict | None:
    text = home_files.read_text(home, relative)
    return None if text is None else tomllib.loads(text)


def home_target(home: Path, path: str) -> Path:
    """Where `~/...` lands in `home`; ValueError for `..`, NUL or a path not under ~/. A symlink on the
    way is refused when the file is written (`home_files`), not here: it can appear in between."""
    if not path.startswith("~/"):
        raise ValueError(f"{path!r} is not under ~/")
    return home.joinpath(*home_files.parts_of(path[2:]))


# --- Steps -----------------------------------------------------------------------------------------

_UNSAFE_FOLDER_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def _short_names(repos: list[ResolvedRepository]) -> list[str]:
    return checkout_folders([repo.name for repo in repos])


def checkout_folders(repository_names: list[str]) -> list[str]:
    """Checkout folder names under ~/workspaces, for repositories in their binding order: the last
    segment of each name, made a plain folder name (a name like `acme/..` from an older row must not
    put a checkout in the home itself), numbered when two would be the same."""
    names: list[str] = []
    for repository_name in repository_names:
        base = _UNSAFE_FOLDER_CHARS.sub("-", repository_name.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
        if base.strip(".") == "":
            base = "repo"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


async def fetch_mirror(data_dir: Path, key: str, url: str, credential: str | None, refresh: bool,
                       warnings: list[str], label: str, *, allow_local: bool | None = None) -> Path:
    """The mirror of `url`; fetched when `refresh` (or absent), else (or if the origin fails) as is.

    `git.ensure_mirror` checks `url` again (it may now resolve into the data dir); a refusal is a
    failed fetch like any other."""
    existing = git.mirror_path(data_dir, key)
    if not refresh and (existing / "HEAD").exists():
        return existing
    try:
        return await git.ensure_mirror(data_dir, key, url, credential,  # locks the mirror itself
                                       allow_local=allow_local)
    except git.GitError as exc:
        if not (existing / "HEAD").exists():
            raise
        warnings.append(f"Could not refresh {label} ({exc.stderr or exc}); using the copy fetched last")
        return existing


def _credential_line(url: str, credential: str) -> str:
    user, _, secret = credential.partition(":") if ":" in credential else ("x-access-token", "", credential)
    parsed = urlparse(url)
    return f"{parsed.scheme}://{quote(user, safe='')}:{quote(secret, safe='')}@{parsed.netloc}\n"


async def _existing_checkout(dest: Path) -> checkouts.CheckoutResult:
    branch = (await git.run_git("rev-parse", "--abbrev-ref", "HEAD", cwd=dest)).strip()
    commit = (await git.run_git("rev-parse", "HEAD", cwd=dest)).strip()
    return checkouts.CheckoutResult(dest, branch, commit, checkouts.DEFAULT_METHOD, 0.0)


def clones_from_origin(url: str) -> bool:
    """Whether a workspace can clone `url` itself: a network origin (https, http, ssh, git, scp-like), not a path
    or file:// URL of this machine's disk."""
    scheme = urlparse(url).scheme.lower()
    return scheme in ("https", "http", "ssh", "git") or (not scheme and re.match(r"^[\w.-]+@[\w.-]+:", url) is not None)


async def _planned(mirror: Path, dest: Path, branch: str, url: str,
                   plan: list[dict[str, str]]) -> checkouts.CheckoutResult:
    """A checkout the workspace makes itself: its branch's commit, as this control plane's mirror has it."""
    commit = await checkouts.branch_commit(mirror, branch, url)
    plan.append({"path": f"workspaces/{dest.name}", "url": url, "branch": branch, "commit": commit})
    return checkouts.CheckoutResult(dest, branch, commit, checkouts.DEFAULT_METHOD, 0.0)


def clone_script(plan: list[dict[str, str]]) -> str:
    """The shell script a workspace runs in its home to make the planned checkouts (`clone_in_workspace`):
    each repository cloned from its origin (HTTPS through the home's git credentials, `store_git_credentials`),
    at the commit provisioning read its configuration from, with the agent's identity; a checkout already there
    (an earlier attempt, the agent's work) is kept."""
    lines = ["set -eu"]
    for entry in plan:
        path, partial = shlex.quote(entry["path"]), shlex.quote(entry["path"] + ".partial")
        gone = shlex.quote(f"{entry['path']}: {entry['commit'][:12]} is gone from the origin; at its newest commit")
        lines += [
            f"if [ ! -d {path}/.git ]; then",
            f"  rm -rf {partial}",
            f"  git clone --quiet --branch {shlex.quote(entry['branch'])} -- {shlex.quote(entry['url'])} {partial}",
            f"  git -C {partial} reset --quiet --hard {shlex.quote(entry['commit'])} 2>/dev/null || "
            f"echo {gone} >&2",
            f"  mv {partial} {path}",
            "fi",
            f"git -C {path} config user.name {shlex.quote(AGENT_NAME)}",
            f"git -C {path} config user.email {shlex.quote(AGENT_EMAIL)}",
        ]
    return "\n".join(lines) + "\n"


async def make_planned_checkouts(runtime: Any, handle: Any, result: ProvisionResult,
                                 timeout: float = 900.0) -> None:
    """Run `clone_script` in the workspace (`runtime.exec`: on Kubernetes, in a pod on the workspace's claim, from
    the origins with the home's git credentials); raises RuntimeFailure with git's words when it fails."""
    if not result.clone_plan:
        return
    started = time.perf_counter()
    done = await runtime.exec(handle, ["sh", "-c", clone_script(result.clone_plan)], timeout,
                              env={"HOME": handle.home, "GIT_TERMINAL_PROMPT": "0"}, cwd=handle.home)
    if done.exit_code != 0 or done.timed_out:
        names = ", ".join(entry["path"] for entry in result.clone_plan)
        why = "timed out" if done.timed_out else f"exit code {done.exit_code}"
        raise RuntimeFailure("Checkout failed", f"cloning {names} in the workspace {why}: {done.output[-2000:]}")
    result.warnings += [line for line in done.output.splitlines() if "is gone from the origin" in line]
    result.timings["clone"] = result.timings.get("clone", 0.0) + time.perf_counter() - started


async def _clone(resolved, home, data_dir, refresh, result, allow_local, in_workspace: bool = False) -> None:
    credentials: list[str] = []
    for repo, short in zip(resolved.repositories, _short_names(resolved.repositories), strict=True):
        # ~/workspaces must be a real folder of the home: a symlink there would put the checkout elsewhere.
        dest = await asyncio.to_thread(home_files.ensure_dir, home, "workspaces") / short
        source = None
        if (dest / ".git").is_dir() and not dest.is_symlink():  # provisioned before: keep the agent's work
            done = await _existing_checkout(dest)
        else:
            mirror = await fetch_mirror(data_dir, repo.id, repo.url, repo.credential, refresh,
                                        result.warnings, repo.name, allow_local=allow_local)
            if in_workspace and clones_from_origin(repo.url):
                # The workspace clones it from the origin; its configuration is read here from the mirror.
                done, source = await _planned(mirror, dest, repo.default_branch, repo.url,
                                              result.clone_plan), mirror
            else:
                done = await checkouts.checkout(mirror, dest, repo.default_branch, origin_url=repo.url)
        if source is None:
            await git.run_git("config", "user.name", AGENT_NAME, cwd=done.path)
            await git.run_git("config", "user.email", AGENT_EMAIL, cwd=done.path)
        problem = None
        try:
            _, config = await read_repo_config(source or done.path, done.commit if source else "HEAD")
        except (repo_config.RepoConfigError, git.GitError) as exc:
            # A malformed file fails its warm hook (recorded); a tree git cannot list just has none.
            problem = str(exc) if isinstance(exc, repo_config.RepoConfigError) else None
            result.warnings.append(f"{repo.name}: {exc}")
            config = None
        result.repos.append(ProvisionedRepo(repo.name, done.path, done.branch, done.commit,
                                            config.system_prompt if config else None,
                                            config.start_hook if config else None,
                                            config.warm_hook if config else None, problem))
        if repo.credential and urlparse(repo.url).scheme in ("https", "http"):
            credentials.append(_credential_line(repo.url, repo.credential))
    if credentials:
        await store_git_credentials(home, credentials)


async def store_git_credentials(home: Path, lines: list[str]) -> None:
    """`~/.git-credentials` (0600) read by git's `store` helper, enabled in `~/.gitconfig`, so that the
    agent can fetch and push over HTTPS without the token in any remote URL."""
    await asyncio.to_thread(home_files.write_text, home, ".git-credentials", "".join(lines), 0o600)
    # `git config --file` would write through a symlinked ~/.gitconfig: edit a copy, then write it back.
    existing = await asyncio.to_thread(home_files.read_text, home, ".gitconfig")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "gitconfig"
        copy.write_text(existing or "", "utf-8")
        await git.run_git("config", "--file", str(copy), "credential.helper", "store")
        text = copy.read_text("utf-8")
    await asyncio.to_thread(home_files.write_text, home, ".gitconfig", text)


def env_file_text(variables: dict[str, str]) -> str:
    """`export K='v'` lines, each value quoted for the shell."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in variables.items())


async def _variables(resolved, home, result) -> None:
    result.env = dict(resolved.variables)
    result.env_file = await asyncio.to_thread(home_files.write_text, home, ".replicas/env",
                                              env_file_text(result.env), 0o600)


async def _files(resolved, home, result) -> None:
    for path, content in resolved.files.items():
        try:
            home_target(home, path)
            target = await asyncio.to_thread(home_files.write_text, home, path[2:], content, 0o600)
        except ValueError as exc:  # PathRefused included: a symlink on the way is refused, not followed
            result.warnings.append(f"File refused: {exc}")
            continue
        result.files.append(target)


def _write_mcp_configs(home: Path, mcps) -> list[Path]:
    write = home_files.write_text
    claude, codex, opencode = agent_config.CLAUDE_CONFIG, agent_config.CODEX_CONFIG, agent_config.OPENCODE_CONFIG
    return [
        write(home, claude, json.dumps(agent_config.merge_claude_config(_read_json(home, claude), mcps),
                                       indent=2), 0o600),
        write(home, codex, agent_config.dumps_toml(agent_config.merge_codex_config(_read_toml(home, codex),
                                                                                   mcps)), 0o600),
        write(home, opencode, json.dumps(agent_config.merge_opencode_config(_read_json(home, opencode), mcps),
                                         indent=2), 0o600),
    ]


async def _mcp(resolved, home, result) -> None:
    if not resolved.mcps:
        return
    try:
        result.mcp_configs = await asyncio.to_thread(_write_mcp_configs, home, resolved.mcps)
    except home_files.PathRefused as exc:
        result.warnings.append(f"MCP configuration not written: {exc}")


BUILTIN_SKILLS = Path(__file__).resolve().parent.parent / "data" / "skills"


def _write_builtin_skills(home: Path, warnings: list[str]) -> None:
    """Our own skills (the `replicas` CLI's agent-mode verbs), in every workspace as the hosted CLI bundles
    one; an environment's skill of the same slug, installed after, replaces it."""
    for skill_file in sorted(BUILTIN_SKILLS.glob("*/SKILL.md")):
        for rel in agent_config.SKILL_DIRS:
            try:
                home_files.write_text(home, f"{rel}/{skill_file.parent.name}/SKILL.md", skill_file.read_text())
            except home_files.PathRefused as exc:
                warnings.append(f"Skill {skill_file.parent.name!r} not written: {exc}")


async def _skills(resolved, home, data_dir, refresh, result, allow_local) -> None:
    await asyncio.to_thread(_write_builtin_skills, home, result.warnings)
    for skill in resolved.skills.values():
        if await install_skill(skill, resolved.registries, home, data_dir, refresh=refresh,
                               warnings=result.warnings, allow_local=allow_local):
            result.skills.append(skill.slug)


SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SKILLS_SH = re.compile(r"^(?:https?://(?:www\.)?skills\.sh/)?([\w.-]+)/([\w.-]+)(?:/([\w.-]+))?/?$")
PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class _SkillTree:
    """A tree that may hold a skill: a registry, or the repository a skill's source names."""

    key: str
    url: str
    label: str
    branch: str | None  # None: ask the remote
    folder_hint: str | None = None


def _source_tree(source: str) -> _SkillTree | None:
    """The git repository behind a skill's `source`: a git URL or path, or a skills.sh reference
    (`owner/repo/skill`, `https://skills.sh/owner/repo/skill`), which names a GitHub repository."""
    source = source.strip()
    key = "skill-source-" + hashlib.sha256(source.encode()).hexdigest()[:16]
    if source.startswith("/") or source.startswith("file://") or (
            source.startswith(("https://", "http://")) and not SKILLS_SH.match(source)):
        try:
            url = git.normalize_url(source)
        except Exception:  # noqa: BLE001 - a malformed source is reported as unfetchable
            return None
        return _SkillTree(key, url, git.display_url(url), None)
    match = SKILLS_SH.match(source)
    if match is None:
        return None
    return _SkillTree(key, f"https://github.com/{match[1]}/{match[2]}", source, None, match[3])


async def _source_branch(tree: _SkillTree, data_dir: Path, refresh: bool, timeout: float,
                         warnings: list[str]) -> str:
    """The default branch of a skill source: asked of the remote, or of a mirror fetched earlier when
    `refresh` is off or the remote cannot be reached."""
    mirror = git.mirror_path(data_dir, tree.key)
    if refresh or not (mirror / "HEAD").exists():
        try:
            return await git.probe_remote(tree.url, timeout=timeout)
        except git.GitError as exc:
            if not (mirror / "HEAD").exists():
                raise
            warnings.append(f"Could not reach {tree.label} ({exc.stderr or exc}); using the copy fetched last")
    head = await git.run_git("symbolic-ref", "HEAD", cwd=mirror)
    return head.strip().removeprefix("refs/heads/")


async def _skill_folder(mirror: Path, ref: str, skill: ResolvedSkill, hint: str | None,
                        from_source: bool) -> str | None:
    """The folder of the tree holding the skill's SKILL.md ('' for the root), or None."""
    paths = [p for p in await git.list_files(mirror, ref) if p.rsplit("/", 1)[-1] == discovery.SKILL_FILE]
    folders = {p.rsplit("/", 1)[0] if "/" in p else "": p for p in paths}
    wanted = {name.lower() for name in (skill.slug, skill.name, hint) if name}
    for folder in folders:
        if folder and folder.rsplit("/", 1)[-1].lower() in wanted:
            return folder
    for folder, path in folders.items():
        meta = discovery.front_matter(await git.read_file(mirror, ref, path))
        if str(meta.get("name") or "").lower() in wanted:
            return folder
    if from_source and len(folders) == 1:
        return next(iter(folders))
    return None


def _extract(archive: Path, home: Path, slug: str) -> None:
    """Unpack a skill into each agent's skills folder. `fresh_dir` walks to the folder without following
    a symlink; the `data` filter refuses members that are absolute, climb out with `..`, or are links
    pointing outside the folder (a skill's tree is anyone's)."""
    for rel in agent_config.SKILL_DIRS:
        dest = home_files.fresh_dir(home, f"{rel}/{slug}")
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")


async def install_skill(skill: ResolvedSkill, registries: list[ResolvedRegistry], home: Path, data_dir: Path,
                        *, refresh: bool, warnings: list[str], probe_timeout: float = PROBE_TIMEOUT,
                        allow_local: bool | None = None) -> bool:
    """Copy a skill's folder into each agent's skills directory; False (with a warning) if it cannot be
    fetched or found. Registered registries are searched first, then the skill's own source."""
    if not SLUG.match(skill.slug):
        warnings.append(f"Skill {skill.slug!r} not installed: its slug is not a safe folder name")
        return False
    trees = [_SkillTree(r.mirror_key, r.url, r.full_name, r.default_branch) for r in registries]
    source = _source_tree(skill.source)
    if source is not None:
        trees.append(source)
    reasons = []
    for tree in trees:
        try:
            branch = tree.branch or await _source_branch(tree, data_dir, refresh, probe_timeout, warnings)
            mirror = await fetch_mirror(data_dir, tree.key, tree.url, None, refresh, warnings, tree.label,
                                        allow_local=allow_local)
            ref = f"refs/heads/{branch}"
            folder = await _skill_folder(mirror, ref, skill, tree.folder_hint, tree is source)
        except (git.GitError, OSError) as exc:
            reasons.append(f"{tree.label}: {getattr(exc, 'stderr', '') or exc}")
            continue
        if folder is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "skill.tar"
            await git.run_git("archive", "--format=tar", "-o", str(archive),
                              f"{ref}:{folder}" if folder else ref, cwd=mirror)
            try:
                await asyncio.to_thread(_extract, archive, home, skill.slug)
            except (tarfile.TarError, home_files.PathRefused) as exc:
                warnings.append(f"Skill {skill.slug!r} not installed: {exc}")
                return False
        return True
    why = "; ".join(reasons) or "no registered registry or source holds it"
    warnings.append(f"Skill {skill.slug!r} ({skill.source}) not installed: could not be fetched ({why})")
    return False


SYSTEM_PROMPT_FILE = Path(".replicas") / "system-prompt.md"
START_HOOK_FILE = Path(".replicas") / "start-hook.sh"


def kept_paths(home: Path) -> dict[str, str]:
    """The engine's variables for what provisioning may have written into `home` and a later start (wake)
    finds again. Paths only: the engine goes without a file that is not there."""
    return {"REPLICAS_START_HOOK_FILE": str(home / START_HOOK_FILE)}


def _write_prompt(home: Path, prompt: str) -> Path:
    path = home_files.write_text(home, SYSTEM_PROMPT_FILE.as_posix(), prompt + "\n")
    for rel in agent_config.INSTRUCTION_FILES:
        existing = home_files.read_text(home, rel)
        home_files.write_text(home, rel, agent_config.merge_instructions(existing, prompt))
    return path


async def _system_prompt(resolved, home, result) -> None:
    repo_prompts = [repo.system_prompt for repo in result.repos]
    prompt = agent_config.join_prompts([resolved.system_prompt, *repo_prompts])
    if prompt:
        result.system_prompt_path = await asyncio.to_thread(_write_prompt, home, prompt)


def start_hook_script(parts: list[tuple[str, Path]]) -> str:
    """The merged start hook: each part in its own bash, in order; a failing part does not stop the
    next (spec §5), and the script exits with the last non-zero status."""
    lines = ["#!/usr/bin/env bash", "# Written by replicas provisioning: Global, then environment start hooks.",
             "status=0"]
    for label, path in parts:
        lines += [f"echo {shlex.quote('== start hook: ' + label)}",
                  f"bash {shlex.quote(str(path))} || status=$?"]
    return "\n".join([*lines, "exit $status", ""])


def _write_start_hook(home: Path, hooks: list[tuple[str, str]]) -> Path:
    parts = []
    for index, (label, content) in enumerate(hooks):
        part = home_files.write_text(home, f".replicas/hooks/start-{index}.sh",
                                     content if content.endswith("\n") else content + "\n", 0o700)
        parts.append((label, part))
    return home_files.write_text(home, START_HOOK_FILE.as_posix(), start_hook_script(parts), 0o700)


async def _start_hook(resolved, home, result) -> None:
    if resolved.start_hooks:
        result.start_hook_path = await asyncio.to_thread(_write_start_hook, home, resolved.start_hooks)


def _step_summary(name: str, result: ProvisionResult) -> dict[str, Any]:
    """What a step produced, for a progress journal: names and paths, never values."""
    if name == "clone":
        return {"repos": [{"name": r.name, "path": str(r.path), "branch": r.branch, "commit": r.commit}
                          for r in result.repos]}
    if name == "variables":
        return {"keys": sorted(result.env), "path": str(result.env_file)}
    if name == "files":
        return {"paths": [str(p) for p in result.files]}
    if name == "mcp":
        return {"paths": [str(p) for p in result.mcp_configs]}
    if name == "skills":
        return {"installed": list(result.skills)}
    path = result.system_prompt_path if name == "system_prompt" else result.start_hook_path
    return {"path": str(path) if path else None}


async def provision_home(resolved: ResolvedEnvironment, home: Path, data_dir: Path, *,
                         on_step: OnStep | None = None, refresh: bool = True,
                         allow_local_repositories: bool | None = None,
                         clone_in_workspace: bool = False) -> ProvisionResult:
    """Lay out `resolved` in `home` in the documented order; see the module docstring.

    `refresh` fetches each mirror from its origin first; when the origin cannot be reached and a
    mirror exists, provisioning goes on from the mirror with a warning. `False` never fetches a mirror
    that exists. Raises on a repository that cannot be checked out at all (no mirror, no origin).
    `allow_local_repositories` (REPLICAS_ALLOW_LOCAL_REPOSITORIES) off refuses local repositories and
    skill sources at fetch time too, whatever was registered before it was turned off; None follows the
    running app's setting (`git.ensure_mirror`).

    `clone_in_workspace`: the home is not the workspace's disk but staged for it (Kubernetes): repositories with
    a network origin are only planned (`result.clone_plan`), for the workspace to clone from the origin with
    `clone_script`; their configuration is read from the mirror at the planned commit."""
    home.mkdir(parents=True, exist_ok=True)
    result = ProvisionResult()
    steps = {
        "clone": lambda: _clone(resolved, home, data_dir, refresh, result, allow_local_repositories,
                                clone_in_workspace),
        "variables": lambda: _variables(resolved, home, result),
        "files": lambda: _files(resolved, home, result),
        "mcp": lambda: _mcp(resolved, home, result),
        "skills": lambda: _skills(resolved, home, data_dir, refresh, result, allow_local_repositories),
        "system_prompt": lambda: _system_prompt(resolved, home, result),
        "start_hook": lambda: _start_hook(resolved, home, result),
    }
    for name in STEPS:
        started = time.perf_counter()
        warnings_before = len(result.warnings)
        try:
            await steps[name]()
        except home_files.PathRefused as exc:  # a symlink planted in the home: reported, never followed
            result.warnings.append(f"{name}: {exc}")
        result.timings[name] = time.perf_counter() - started
        if on_step is not None:
            detail = {**_step_summary(name, result), "seconds": round(result.timings[name], 3),
                      "warnings": result.warnings[warnings_before:]}
            outcome = on_step(name, detail)
            if asyncio.iscoroutine(outcome):
                await outcome
    return result
