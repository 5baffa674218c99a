"""Install the pinned agent CLIs with npm into a shared tools directory, and check what is there.

Layout: one npm prefix per agent, `<tools>/<agent>/node_modules/.bin/<binary>`. The tools directory is
`<data_dir>/tools` unless REPLICAS_TOOLS_DIR says otherwise (`tools_dir()`).

npm 11 does not run install scripts by default, so after npm the package's own set-up script runs:
Claude Code's `install.cjs` always (it puts the native binary in place of a stub), opencode's
`postinstall.mjs` when its binary does not answer `--version`. Installing is idempotent: an agent whose
binary already reports the pinned version is left alone. cursor-agent is not on npm: `check()` only
says whether it is on PATH.

`check()` runs each binary (`--version`); `find_installed()` only looks (a few `stat` calls and npm's
package.json), which is cheap enough for the control plane to ask before every create.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TOOLS_DIR_ENV = "REPLICAS_TOOLS_DIR"


@dataclass(frozen=True)
class AgentPackage:
    """A pinned npm package that provides an agent CLI."""

    agent: str
    package: str
    version: str
    binary: str
    setup_script: str | None = None  # run with node after npm (npm 11 skips install scripts)
    always_run_setup: bool = False


PACKAGES: dict[str, AgentPackage] = {
    "claude": AgentPackage("claude", "@anthropic-ai/claude-code", "2.1.330", "claude", "install.cjs",
                           always_run_setup=True),
    "codex": AgentPackage("codex", "@openai/codex", "0.169.0", "codex"),
    "opencode": AgentPackage("opencode", "opencode-ai", "1.18.33", "opencode", "postinstall.mjs"),
}
CURSOR_BINARY = "cursor-agent"


@dataclass
class AgentStatus:
    """What `check()` found for one agent."""

    agent: str
    pinned: str | None
    version: str | None = None
    path: str | None = None
    missing: list[str] = field(default_factory=list)
    action: str = "checked"  # "installed", "already installed", "failed", "checked"

    @property
    def ok(self) -> bool:
        return not self.missing


def tools_dir(data_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where agent CLIs are installed: REPLICAS_TOOLS_DIR, else `<data_dir>/tools`."""
    environ = os.environ if environ is None else environ
    override = environ.get(TOOLS_DIR_ENV)
    return Path(override) if override else Path(data_dir) / "tools"


def package_dir(tools: Path, agent: str) -> Path:
    return Path(tools) / agent


def binary_path(tools: Path, agent: str) -> Path:
    return package_dir(tools, agent) / "node_modules" / ".bin" / PACKAGES[agent].binary


def find_binary(agent: str, tools: Path | None = None, path: str | None = None) -> str | None:
    """The agent's binary: from the tools directory if installed there, else from PATH."""
    if tools is not None and agent in PACKAGES and binary_path(tools, agent).exists():
        return str(binary_path(tools, agent))
    name = PACKAGES[agent].binary if agent in PACKAGES else CURSOR_BINARY if agent == "cursor" else agent
    return shutil.which(name, path=path)


def npm_install_argv(tools: Path, package: AgentPackage, npm: str = "npm") -> list[str]:
    return [npm, "install", "--prefix", str(package_dir(tools, package.agent)), "--no-audit", "--no-fund",
            "--loglevel=error", f"{package.package}@{package.version}"]


async def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return 124, f"timed out after {timeout:g} s"
    return process.returncode or 0, output.decode(errors="replace")


async def binary_version(binary: Path | str) -> str | None:
    """The version a CLI reports with `--version` (None when it does not run or say one)."""
    if not Path(binary).exists() and not shutil.which(str(binary)):
        return None
    try:
        code, output = await _run([str(binary), "--version"], timeout=60)
    except OSError:
        return None
    match = re.search(r"\d+\.\d+\.\d+\S*", output)
    return match.group(0) if code == 0 and match else None


async def check_agent(tools: Path, agent: str) -> AgentStatus:
    if agent == "cursor":
        found = shutil.which(CURSOR_BINARY)
        status = AgentStatus(agent="cursor", pinned=None, path=found)
        if found:
            status.version = await binary_version(found)
        else:
            status.missing.append(f"{CURSOR_BINARY} is not on PATH")
        return status
    package = PACKAGES[agent]
    binary = binary_path(tools, agent)
    status = AgentStatus(agent=agent, pinned=package.version, path=str(binary) if binary.exists() else None)
    if not binary.exists():
        status.missing.append(f"{package.package} is not installed in {package_dir(tools, agent)}")
        return status
    status.version = await binary_version(binary)
    if status.version is None:
        status.version = installed_package_version(tools, agent)
        status.missing.append(f"{binary} does not run (its set-up script has not run?)")
    elif status.version != package.version:
        status.missing.append(f"version {status.version} installed, {package.version} pinned")
    return status


def find_installed(tools: Path, agent: str, path: str | None = None) -> AgentStatus:
    """What is there, without running it: the binary (the tools directory, else PATH) and the version npm
    installed (None for a binary from PATH). `missing` says what is not there or not the pinned version;
    `status.path` is set whenever a binary was found."""
    package = PACKAGES.get(agent)
    found = find_binary(agent, Path(tools), path=path)
    status = AgentStatus(agent=agent, pinned=package.version if package else None, path=found)
    if found is None:
        where = f"in {package_dir(tools, agent)} or on PATH" if package else "on PATH"
        binary = package.binary if package else CURSOR_BINARY if agent == "cursor" else agent
        status.missing.append(f"{binary} is not installed {where}")
        return status
    if package is not None and Path(found) == binary_path(tools, agent):
        status.version = installed_package_version(tools, agent)
        if status.version != package.version:
            status.missing.append(f"version {status.version} installed, {package.version} pinned")
    return status


async def check(tools: Path, agents: Iterable[str] | None = None) -> list[AgentStatus]:
    """Per agent: installed version, path, and what is missing (cursor: on PATH or not)."""
    names = list(agents) if agents is not None else [*PACKAGES, "cursor"]
    return list(await asyncio.gather(*(check_agent(Path(tools), name) for name in names)))


async def install_agent(tools: Path, agent: str, *, npm: str = "npm", node: str = "node") -> AgentStatus:
    """Install one pinned agent unless it is already there; the status says what happened."""
    tools = Path(tools)
    status = await check_agent(tools, agent)
    if status.ok:
        status.action = "already installed"
        return status
    package = PACKAGES[agent]
    package_dir(tools, agent).mkdir(parents=True, exist_ok=True)
    code, output = await _run(npm_install_argv(tools, package, npm))
    if code != 0:
        status.action = "failed"
        status.missing = [f"npm install {package.package}@{package.version} failed: {output.strip()[-2000:]}"]
        return status
    module_dir = package_dir(tools, agent) / "node_modules" / package.package
    if package.setup_script and (package.always_run_setup or await binary_version(binary_path(tools, agent)) is None):
        code, output = await _run([node, package.setup_script], cwd=module_dir)
        if code != 0:
            status.action = "failed"
            status.missing = [f"{package.setup_script} failed: {output.strip()[-2000:]}"]
            return status
    status = await check_agent(tools, agent)
    status.action = "installed" if status.ok else "failed"
    return status


async def install(tools: Path, agents: Iterable[str] | None = None, *, npm: str = "npm") -> list[AgentStatus]:
    """Install the pinned CLIs (all of them by default) side by side, in parallel."""
    names = list(agents) if agents is not None else list(PACKAGES)
    unknown = [name for name in names if name not in PACKAGES]
    if unknown:
        raise ValueError(f"unknown agent(s): {', '.join(unknown)} (known: {', '.join(PACKAGES)})")
    return list(await asyncio.gather(*(install_agent(Path(tools), name, npm=npm) for name in names)))


def installed_package_version(tools: Path, agent: str) -> str | None:
    """The version npm installed (from the package's package.json), whether or not it runs."""
    manifest = package_dir(tools, agent) / "node_modules" / PACKAGES[agent].package / "package.json"
    try:
        return json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None
