"""The Test of an environment's MCP server: does it answer the MCP handshake, and with which tools?

- A stdio server is started where an agent would start it: in a throwaway workspace of its environment (the
  warm-hook test's sandbox, `hook_runner.SandboxHookRun`: the environment's variables, files and
  repositories, the runtime's isolation), by `replicas.engine.mcp_probe`, which connects with the `mcp` SDK's
  client, lists the tools and prints the outcome. The server's stderr streams as output.
- An http or sse server is reached from the control plane, through the outbound policy like every request
  made for a tenant (`outbound.guarded_client`): a URL that resolves to a refused address fails the check with
  the policy's reason and is never connected to. The SDK speaks httpx2; `_PolicyBridge` carries its requests
  over the guarded httpx client.

Either way the check ends with one `complete` event: `{ok, transport, server: {name, version} | null,
protocol_version, tools, error}`. Nothing is stored.

    check = await prepare_check(session, principal, sandbox, env_ref, mcp_id)   # 404s, no sandbox: raised here
    async for event in run_check(check):                                          # progress, output, complete
        ...

`prepare_draft_check` checks a server that is not saved yet (the add/edit form's Test): its transport and
config are checked as a create would check them (400 otherwise), then it runs the same way.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2

from replicas import outbound
from replicas.engine import mcp_probe
from replicas.errors import ReplicasError
from replicas.services import env_mcps, provisioning
from replicas.services.env_hooks import HookSandbox
from replicas.services.environments import resolve_environment
from replicas.services.hook_runner import SandboxHookRun
from replicas.services.principal import Principal

# How long a server has to answer (a stdio server's first start may fetch its package, as `npx` does), and
# what its sandbox may take on top of that to start and stop.
PROBE_TIMEOUT_SECONDS = 60.0
SANDBOX_MARGIN_SECONDS = 30.0
_CONFIG_END = "REPLICAS_MCP_CONFIG"


@dataclass(frozen=True)
class McpCheckEvent:
    """`progress` (message), `output` (a chunk of the server's stderr) or `complete` (result)."""

    type: str
    message: str | None = None
    output: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class McpCheck:
    """One prepared check: the server's name, transport and decrypted config, and for stdio its sandbox run."""

    name: str
    transport: str
    config: dict[str, Any] = field(repr=False)
    run: SandboxHookRun | None = None


def probe_script(config: dict[str, Any], timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """The sandbox's script: the probe, fed the server's config on stdin (one JSON line, so the here-document's
    end marker cannot occur in it)."""
    payload = json.dumps({"command": config["command"], "args": config.get("args") or [],
                          "env": config.get("env") or {}, "timeout": timeout})
    return (f"exec {shlex.quote(sys.executable)} -m replicas.engine.mcp_probe <<'{_CONFIG_END}'\n"
            f"{payload}\n{_CONFIG_END}\n")


async def prepare_check(session, principal: Principal, sandbox: HookSandbox, env_ref: str,
                        mcp_id: str) -> McpCheck:
    """Find the server (404 otherwise) and, for stdio, lay out its sandbox run; refuses before any stream
    starts when no sandbox can be had. The session is released: the check holds no database connection."""
    env = await resolve_environment(session, principal, env_ref)
    row = await env_mcps.get_mcp(session, principal, env, mcp_id)
    config = json.loads(sandbox.box.decrypt(row.config_encrypted))
    return await _prepare(session, principal, sandbox, env, McpCheck(row.name, row.transport, config))


async def prepare_draft_check(session, principal: Principal, sandbox: HookSandbox, env_ref: str, *,
                              transport: str, config: Any, name: str | None = None) -> McpCheck:
    """As `prepare_check`, for a server not saved: `config` is checked against `transport` as a create checks
    it (400), the name only labels the check."""
    env = await resolve_environment(session, principal, env_ref)
    draft = McpCheck(name or "draft", transport, env_mcps.normalize_config(transport, config))
    return await _prepare(session, principal, sandbox, env, draft)


async def _prepare(session, principal: Principal, sandbox: HookSandbox, env, check: McpCheck) -> McpCheck:
    if check.transport == "stdio":
        await sandbox.runtime.check_isolation()
        resolved = await provisioning.resolve_workspace_config(session, sandbox.box, principal, str(env.id))
        check.run = SandboxHookRun(sandbox.runtime, resolved, probe_script(check.config), settings=sandbox.settings,
                                   label=f"MCP server {check.name}",
                                   timeout=PROBE_TIMEOUT_SECONDS + SANDBOX_MARGIN_SECONDS)
    await session.close()
    return check


async def run_check(check: McpCheck) -> AsyncIterator[McpCheckEvent]:
    """Run a prepared check; the last event is always `complete`."""
    if check.run is None:
        yield McpCheckEvent("progress", message=f"Connecting to {check.config['url']} ({check.transport})")
        outcome = await check_remote(check.transport, check.config)
    else:
        outcome = None
        async for event in _run_in_sandbox(check.run):
            if event.type == "complete":
                outcome = event.result
            else:
                yield event
    assert outcome is not None
    yield McpCheckEvent("complete", result={"transport": check.transport, "server": None, "protocol_version": None,
                                            "tools": [], "error": None, **outcome})


async def _run_in_sandbox(run: SandboxHookRun) -> AsyncIterator[McpCheckEvent]:
    """The probe's run: its output streamed line by line without the result line, which becomes the outcome."""
    pending = ""
    try:
        async for kind, text in run:
            if kind != "output":
                yield McpCheckEvent("progress", message=text)
                continue
            lines = (pending + text).split("\n")
            pending = lines.pop()
            shown = [line for line in lines if not line.startswith(mcp_probe.RESULT_MARKER)]
            if shown:
                yield McpCheckEvent("output", output="".join(f"{line}\n" for line in shown))
    except (ReplicasError, OSError) as exc:
        message = exc.error if isinstance(exc, ReplicasError) else str(exc)
        yield McpCheckEvent("complete", result={"ok": False, "error": f"The sandbox could not be run: {message}"})
        return
    if pending and not pending.startswith(mcp_probe.RESULT_MARKER):
        yield McpCheckEvent("output", output=pending)
    assert run.result is not None
    yield McpCheckEvent("complete", result=_probe_outcome(run.result.output, run.result.exit_code,
                                                          run.result.timed_out))


def _probe_outcome(output: str, exit_code: int, timed_out: bool) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(mcp_probe.RESULT_MARKER):
            try:
                return json.loads(line[len(mcp_probe.RESULT_MARKER):])
            except ValueError:
                break
    if timed_out:
        return {"ok": False, "error": "the server did not answer in time"}
    return {"ok": False, "error": f"the check ended without a result (exit code {exit_code}); see its output"}


# --- http and sse servers, through the outbound policy -------------------------------------------------

class _ByteStream(httpx2.AsyncByteStream):
    def __init__(self, response: httpx.Response):
        self._response = response

    async def __aiter__(self):
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _PolicyBridge(httpx2.AsyncBaseTransport):
    """An httpx2 transport (the `mcp` SDK's HTTP client) that sends each request through a guarded httpx client,
    streaming the response back, so that every connection the SDK makes is checked by the outbound policy."""

    def __init__(self, client: httpx.AsyncClient):
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        outgoing = self._client.build_request(request.method, str(request.url), headers=request.headers.raw,
                                              content=await request.aread())
        response = await self._client.send(outgoing, stream=True)
        return httpx2.Response(response.status_code, headers=response.headers.raw, stream=_ByteStream(response),
                               request=request)

    async def aclose(self) -> None:
        await self._client.aclose()


async def check_remote(transport: str, config: dict[str, Any], timeout: float = PROBE_TIMEOUT_SECONDS,
                       policy: outbound.OutboundPolicy | None = None) -> dict[str, Any]:
    """Connect to the http (Streamable HTTP) or sse server of `config` through the outbound policy."""
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    url, headers = config["url"], dict(config.get("headers") or {})
    bridge = _PolicyBridge(outbound.guarded_client(policy, timeout=timeout))

    def client(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=bridge, headers=headers, timeout=timeout, auth=auth)

    async with client(headers=headers, timeout=httpx2.Timeout(timeout)) as http:
        if transport == "sse":
            return await mcp_probe.probe(lambda: Client(sse_client(url, headers=headers, timeout=timeout,
                                                                   sse_read_timeout=timeout,
                                                                   httpx_client_factory=client)), timeout)
        return await mcp_probe.probe(lambda: Client(streamable_http_client(url, http_client=http)), timeout)
