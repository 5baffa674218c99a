"""The layers stay layered: no module imports a layer above its own.

The engine runs inside the workspace and must not drag in the control plane's services; services
know nothing of HTTP; the runtime backends and the store serve the services and know nothing of
them. A module two layers need lives in a neutral place (`replicas/<name>.py`). Every import counts,
also one inside a function or under `TYPE_CHECKING`: each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import replicas

PACKAGE_DIR = Path(replicas.__file__).parent

# layer -> the layers it must not import
FORBIDDEN = {
    "engine": {"services", "api"},
    "services": {"api"},
    "runtime": {"services", "api"},
    "store": {"services", "api"},
    "events": {"api"},
    # The SDK runs where only the client is installed, and speaks to the server over HTTP alone.
    "client": {"services", "api", "store"},
    # The MCP server is a client too: its tools call the REST API through the SDK, on stdio as over HTTP.
    "mcp_server": {"services", "api", "store", "engine"},
}


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "replicas" else None


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for everything `module` imports; `from a import b` also yields `a.b`,
    since `b` may be a module (`from replicas import services`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[:len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def layer_violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """The imports of `module` (dotted name, source text) that cross a forbidden layer boundary."""
    forbidden = FORBIDDEN.get(_layer(module) or "", set())
    found: dict[tuple[int, str], str] = {}
    for line, target in _imported(ast.parse(source), module, is_package):
        layer = _layer(target)
        if layer in forbidden:
            found.setdefault((line, layer), f"{module}:{line} imports {target} ({_layer(module)} -> {layer})")
    return list(found.values())


def package_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def test_no_module_imports_a_layer_above_its_own():
    modules = list(package_modules())
    assert {_layer(name) for name, _ in modules} >= set(FORBIDDEN)  # the walk found every layer
    violations = [violation for name, path in modules
                  for violation in layer_violations(name, path.read_text(), path.name == "__init__.py")]
    assert violations == []


def test_the_check_sees_every_form_of_import():
    engine_module = "replicas.engine.hooks"
    assert layer_violations(engine_module, "from replicas.services.git import run_git\n") == [
        "replicas.engine.hooks:1 imports replicas.services.git (engine -> services)"]
    assert layer_violations(engine_module, "import replicas.api.app\n") == [
        "replicas.engine.hooks:1 imports replicas.api.app (engine -> api)"]
    assert layer_violations(engine_module, "from replicas import services\n") == [
        "replicas.engine.hooks:1 imports replicas.services (engine -> services)"]
    assert layer_violations(engine_module, "def f():\n    from ..services import git\n") == [
        "replicas.engine.hooks:2 imports replicas.services (engine -> services)"]
    assert layer_violations("replicas.services", "from ..api import schemas\n", is_package=True) == [
        "replicas.services:1 imports replicas.api (services -> api)"]
    assert layer_violations("replicas.services", "from .. import api\n", is_package=True) == [
        "replicas.services:1 imports replicas.api (services -> api)"]
    assert layer_violations("replicas.events.pump", "from replicas.api.schemas import common\n") != []
    assert layer_violations("replicas.client.sync", "from replicas.store.models import Workspace\n") == [
        "replicas.client.sync:1 imports replicas.store.models (client -> store)"]
    # What the layers may import.
    assert layer_violations("replicas.api.app", "from replicas.services import replicas\n") == []
    assert layer_violations("replicas.services.replicas", "from replicas.runtime import Runtime\n") == []
    assert layer_violations("replicas.engine.hooks", "from replicas.repo_config import HookSpec\n") == []
