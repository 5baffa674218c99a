"""How fast does the Replica API answer under concurrent load, and how late do SSE clients see events?

    .venv/bin/python -m bench.replica_api_bench [--concurrency 32] [--requests 2000] [--duration 30]
        [--sse-clients 100] [--turns 3] [--shell-calls 4] [--database-url URL | --postgres [ADMIN_URL]]

Starts a real `replicas serve` (SQLite in a scratch data dir; `--database-url` points it at another
database, `--postgres` creates a fresh PostgreSQL database and drops it at the end) and a scripted model
server, registers a generated repository and an environment that points Claude Code at the scripted
model, and creates one replica with the legacy blocking `POST /v1/replica` whose first turn finishes.

1. Reads: for `GET /v1/replica/{id}`, `GET /v1/replica/{id}/history` and `GET /v1/replica` (list),
   one client issues N/20 requests (the unloaded latency), then C concurrent clients (each its own
   keep-alive connection) issue N in all; each run stops early after D seconds. Non-200 answers and
   transport errors are counted as errors. Latency is client-side, request sent to body read.
2. SSE: S clients (each its own connection) open `GET /v1/replica/{id}/events`; once every one has
   the snapshot, T messages are sent one after another, each a scripted turn of text and shell calls.
   For every `id:`-carrying event a client receives, delay = `time.time()` when the read completing the
   frame arrives (each client is a bare asyncio protocol that parses after the run) minus the event's `ts`
   (the engine's journal timestamp, taken inside the workspace when it appended the event; same machine
   clock). `ts` is truncated to milliseconds, so each delay reads
   0 to 1 ms high (0.5 ms on average). Every client must get the same id sequence, each id once.

The bench process itself (httpx clients, SSE parsing, the scripted model's thread) shares the machine
with the server, the workspace engine and the agent CLI, so the figures include that contention.
The replica is deleted and the server stopped at the end, also on failure. Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from bench.workspace_bench import make_repo
from replicas.engine.agents import install
from replicas.testing.script import ShellCall, Text
from replicas.testing.scripted_model import ScriptedModelServer

TOOLS = Path(os.environ.get("REPLICAS_TEST_TOOLS_DIR", "~/.cache/replicas-test-tools")).expanduser()
REPLICAS = str(Path(sys.executable).parent / "replicas")
KEY = "sk_replicas_" + "b" * 40
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`replicas serve` as a subprocess, logging to `<root>/serve.log`."""

    def __init__(self, root: Path, database_url: str | None, log_level: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICAS_")}
        env.update(REPLICAS_DATA_DIR=str(root / "data"), REPLICAS_BOOTSTRAP_API_KEY=KEY,
                   REPLICAS_TOOLS_DIR=str(TOOLS), REPLICAS_LOG_LEVEL=log_level)
        if database_url:
            env["REPLICAS_DATABASE_URL"] = database_url
        self.env = env
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen([REPLICAS, "serve", "--port", str(self.port)], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"replicas serve exited:\n{self.tail()}")
                try:
                    if (await client.get(f"{self.base}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replicas serve did not start:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def tail(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_cpu(process: subprocess.Popen | None) -> float:
    """CPU seconds (user + system, every thread) the server process has used so far; 0 where /proc is not there.
    On a machine shared with the load generator this is the steadier figure: it counts the server's own work."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "max": ordered[-1] if ordered else float("nan"),
            "mean": statistics.fmean(ordered) if ordered else float("nan")}


# -- setup ------------------------------------------------------------------------------------------------


async def create_replica(client: httpx.AsyncClient, origin: Path, model: ScriptedModelServer) -> str:
    """Repository, environment pointing Claude Code at the scripted model, and an active replica whose
    first turn has finished; returns the replica id."""
    repo = (await client.post("/v1/replica/repositories", json={"name": "bench/api", "url": str(origin)}))
    repo.raise_for_status()
    repo_id = repo.json()["repository"]["id"]
    env = await client.post("/v1/environments", json={"name": "bench", "repository_id": repo_id})
    env.raise_for_status()
    env_id = env.json()["environment"]["id"]
    for key, value in {**model.anthropic_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        added = await client.post(f"/v1/environments/{env_id}/variables", json={"key": key, "value": value})
        added.raise_for_status()
    model.add_turn(Text("Ready."))
    started = time.monotonic()
    created = await client.post("/v1/replica", json={"name": "bench", "environment_id": env_id, "message": "hello"},
                                timeout=180)
    if created.status_code != 201 or created.json()["replica"]["status"] != "active":
        raise RuntimeError(f"create failed: {created.status_code} {created.text[:500]}")
    replica_id = created.json()["replica"]["id"]
    await wait_settled(client, replica_id)
    print(f"replica {replica_id} active, first turn done in {time.monotonic() - started:.1f} s")
    return replica_id


async def wait_settled(client: httpx.AsyncClient, replica_id: str, timeout: float = 120) -> None:
    """Until the history ends with a finished turn and no chat is processing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
        chats = (await client.get(f"/v1/replica/{replica_id}")).json()["replica"]["chats"]
        if history["events"] and history["events"][-1]["type"] == "claude-result" and \
                not any(chat["processing"] for chat in chats):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the replica's turn did not finish")


# -- reads ------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    name: str
    latencies: list[float]
    seconds: float
    errors: list[str] = field(default_factory=list)
    concurrency: int = 1
    server_cpu: float = 0.0  # seconds the server used during the run


async def load(base: str, name: str, path: str, concurrency: int, requests: int, seconds: float,
               server: subprocess.Popen | None = None) -> LoadResult:
    """`concurrency` keep-alive clients issue GET `path` until `requests` are done or `seconds` passed."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = requests
    clients = [httpx.AsyncClient(base_url=base, headers=auth(), timeout=60,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
               for _ in range(concurrency)]
    try:
        # Connect and warm up (a failure here shows in the run itself).
        await asyncio.gather(*(c.get(path) for c in clients), return_exceptions=True)
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                start = time.perf_counter()
                try:
                    response = await client.get(path)
                except httpx.TransportError as exc:
                    errors.append(f"{type(exc).__name__} {exc}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

        started, cpu = time.perf_counter(), server_cpu(server)
        await asyncio.gather(*(worker(c) for c in clients))
        return LoadResult(name, latencies, time.perf_counter() - started, errors,
                          server_cpu=server_cpu(server) - cpu)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


# -- SSE --------------------------------------------------------------------------------------------------


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Listener:
    """One SSE client: the id-carrying frames it got, as (seq, type, ts, received)."""

    index: int
    snapshot: asyncio.Event = field(default_factory=asyncio.Event)
    frames: list[tuple[int, str, float, float]] = field(default_factory=list)
    raw: list[tuple[int, bytes, float]] = field(default_factory=list)
    completed: int = 0
    error: str | None = None


class _RawEventStream(asyncio.Protocol):
    """One SSE client at the socket: each read is timestamped as it arrives, frames are split with byte
    operations and their JSON is parsed only at the end, so a hundred clients in this one process do not
    queue behind each other's parsing (with httpx's line iterator, the last of 100 clients stamped an event
    tens of ms after the first). HTTP/1.0: the body is the stream itself, no chunked framing."""

    def __init__(self, listener: Listener, turns: int, on_completed, finished: asyncio.Future):
        self.listener, self.turns, self.on_completed, self.finished = listener, turns, on_completed, finished
        self.buffer = b""
        self.in_body = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        received = time.time()
        if self.finished.done():
            return
        self.buffer += data
        if not self.in_body:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b"\r\n", 1)[0].split(b" ")[1]
            if status != b"200":
                self.listener.error = f"HTTP {status.decode()}"
                self.listener.snapshot.set()
                self._finish()
                return
            self.in_body, self.buffer = True, rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            seq, data_line = None, None
            for line in frame.split(b"\n"):
                if line.startswith(b"id:"):
                    seq = int(line[3:])
                elif line.startswith(b"data:"):
                    data_line = line[5:]
            if data_line is None:
                continue
            if seq is None:
                if b'"hooks.status"' in data_line:  # the snapshot's last frame
                    self.listener.snapshot.set()
                continue
            self.listener.raw.append((seq, data_line, received))
            if b'"chat.turn.completed"' in data_line:
                self.listener.completed += 1
                self.on_completed(self.listener)
                if self.listener.completed >= self.turns:
                    self._finish(close=False)  # open until every client is done: closes cost the server work
                    return

    def _finish(self, close: bool = True) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        if close and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def listen(base: str, replica_id: str, listener: Listener, turns: int, on_completed,
                 release: asyncio.Event) -> None:
    """Read the stream until `turns` turns completed, and close it once `release` is set; frames are timestamped
    when the read that completes them arrives, and parsed into `listener.frames` at the end."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _RawEventStream(listener, turns, on_completed, finished), host, int(port))
    try:
        transport.write(f"GET /v1/replica/{replica_id}/events HTTP/1.0\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {KEY}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await finished
        if listener.error is None:
            await release.wait()
    finally:
        transport.close()


def parse_frames(listener: Listener) -> None:
    """The frames' JSON, parsed once every client is done (parsing while others still read would delay them)."""
    for seq, data_line, received in listener.raw:
        data = json.loads(data_line)
        listener.frames.append((seq, data["type"], parse_ts(data["ts"]), received))
    listener.raw.clear()


async def sse_delays(base: str, replica_id: str, model: ScriptedModelServer, clients: int, turns: int,
                     shell_calls: int, server: subprocess.Popen | None = None) -> dict:
    """Open `clients` SSE streams, run `turns` scripted turns, and measure receive time minus event ts."""
    listeners = [Listener(i) for i in range(clients)]
    turn_done = [asyncio.Event() for _ in range(turns)]

    completions = [0] * turns

    def on_completed(listener: Listener) -> None:
        # The next turn starts once every client has the last one's end: the bench's own POST and the work it
        # triggers must not delay the clients still reading that end.
        completions[listener.completed - 1] += 1
        if completions[listener.completed - 1] == clients:
            turn_done[listener.completed - 1].set()

    release = asyncio.Event()
    tasks = [asyncio.create_task(listen(base, replica_id, item, turns, on_completed, release)) for item in listeners]
    try:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(item.snapshot.wait() for item in listeners)), 60)
        failed = [item.error for item in listeners if item.error]
        if failed:
            raise RuntimeError(f"{len(failed)} SSE clients failed: {failed[:3]}")
        print(f"{clients} SSE clients attached, all got the snapshot in {time.monotonic() - started:.2f} s")
        await asyncio.sleep(0.5)  # let every stream reach its live subscription
        gc.collect()
        gc.freeze()  # this process's own gen-2 pauses would read as delays
        sent_at, cpu = time.time(), server_cpu(server)
        async with httpx.AsyncClient(base_url=base, headers=auth(), timeout=60) as client:
            for turn in range(turns):
                steps = []
                for call in range(shell_calls):
                    steps += [Text(f"Turn {turn + 1}, step {call + 1}: running a command."),
                              ShellCall(f"echo turn-{turn + 1}-step-{call + 1}")]
                model.add_turn(*steps, Text(f"Turn {turn + 1} done."))
                sent = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": f"turn {turn + 1}"})
                # "queued": the client saw the last turn end before the engine finished its after-turn work
                if sent.status_code != 200 or sent.json().get("status") not in ("sent", "queued"):
                    raise RuntimeError(f"message {turn + 1}: {sent.status_code} {sent.text[:300]}")
                await asyncio.wait_for(turn_done[turn].wait(), 120)
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        cpu = server_cpu(server) - cpu
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for item in listeners:
        parse_frames(item)

    sequences = [[seq for seq, *_ in item.frames] for item in listeners]
    reference = sequences[0]
    exact = bool(reference) and all(seq == reference for seq in sequences) and \
        reference == list(range(reference[0], reference[0] + len(reference)))
    # Events stored before the message (none expected: streams start "from now") are not timed.
    delays = [received - ts for item in listeners for _, _, ts, received in item.frames if ts >= sent_at - 0.001]
    types: dict[str, int] = {}
    for _, kind, _, _ in listeners[0].frames:
        types[kind] = types.get(kind, 0) + 1
    by_type = {kind: stats([received - ts for item in listeners for _, k, ts, received in item.frames if k == kind])
               for kind in types}
    frames = sum(len(item.frames) for item in listeners)
    return {"clients": clients, "turns": turns, "events_per_client": len(reference),
            "server_cpu_us_per_frame": round(cpu * 1e6 / frames) if frames and cpu else None,
            "exactly_once": exact, "delays": stats(delays), "types": types, "by_type": by_type,
            "distinct_sequences": len({tuple(seq) for seq in sequences}),
            **first_and_spread(listeners, sent_at)}


def first_and_spread(listeners: list[Listener], sent_at: float) -> dict:
    """Per event: the first client's delay (the pipeline: engine, pump, store, notify) and how much later the
    last client got it (the fan-out to every stream)."""
    arrivals: dict[int, list[float]] = {}
    stamped: dict[int, float] = {}
    for item in listeners:
        for seq, _, ts, received in item.frames:
            if ts >= sent_at - 0.001:
                arrivals.setdefault(seq, []).append(received)
                stamped[seq] = ts
    first = [min(times) - stamped[seq] for seq, times in arrivals.items()]
    spread = [max(times) - min(times) for times in arrivals.values()]
    return {"first_client": stats(first), "fan_out_spread": stats(spread)}


# -- output -----------------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value * 1000:8.1f}"


def print_tables(reads: list[LoadResult], sse: dict | None, database: str) -> None:
    print(f"\nGET latency (keep-alive clients, each its own connection), database: {database}")
    print(f"{'endpoint':<30} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} "
          f"{'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu ms':>7}")
    print("-" * 108)
    for result in reads:
        s = stats(result.latencies)
        cpu = result.server_cpu * 1000 / s["n"] if s["n"] else float("nan")
        print(f"{result.name:<30} {result.concurrency:>7} {s['n']:>8} {len(result.errors):>6} "
              f"{s['n'] / result.seconds:>8.1f} {ms(s['p50'])} {ms(s['p90'])} {ms(s['p99'])} {ms(s['max'])} "
              f"{cpu:>7.2f}")
    print("cpu ms: the server's CPU time per request (user + system), its own work whatever else runs")
    if sse is None:
        print("\nSSE delay: FAILED (see below)")
        return
    d = sse["delays"]
    print(f"\nSSE delay (receive time - engine ts), {sse['clients']} clients, {sse['turns']} turns, "
          f"{sse['events_per_client']} events per client; ts has 1 ms resolution (delays read 0-1 ms high)")
    print(f"{'events':<30} {'pairs':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print("-" * 75)
    print(f"{'all (client, event) pairs':<30} {d['n']:>8} {ms(d['p50'])} {ms(d['p90'])} {ms(d['p99'])} {ms(d['max'])}")
    for kind, s in sorted(sse["by_type"].items(), key=lambda item: -item[1]["n"]):
        print(f"  {kind:<28} {s['n']:>8} {ms(s['p50'])} {ms(s['p90'])} {ms(s['p99'])} {ms(s['max'])}")
    verdict = "yes" if sse["exactly_once"] else f"NO ({sse['distinct_sequences']} distinct sequences)"
    for label, key in (("first client, per event", "first_client"), ("last minus first client", "fan_out_spread")):
        if sse.get(key):
            s = sse[key]
            print(f"{label:<30} {s['n']:>8} {ms(s['p50'])} {ms(s['p90'])} {ms(s['p99'])} {ms(s['max'])}")
    print(f"every client got every event exactly once, same id sequence: {verdict}")
    print(f"server CPU per delivered frame (pump, store and fan-out included): {sse['server_cpu_us_per_frame']} us")


def summary_json(reads: list[LoadResult], sse: dict, database: str) -> str:
    out: dict = {"database": database, "get": []}
    for result in reads:
        s = stats(result.latencies)
        out["get"].append({"endpoint": result.name, "clients": result.concurrency, "requests": s["n"],
                           "errors": len(result.errors), "rps": round(s["n"] / result.seconds, 1),
                           "server_cpu_ms": round(result.server_cpu * 1000 / s["n"], 2) if s["n"] else None,
                           **{f"{k}_ms": round(s[k] * 1000, 1) for k in ("p50", "p90", "p99", "max")}})
    d = sse["delays"]
    out["sse"] = {"clients": sse["clients"], "events_per_client": sse["events_per_client"], "pairs": d["n"],
                  "exactly_once": sse["exactly_once"], "server_cpu_us_per_frame": sse["server_cpu_us_per_frame"],
                  **{f"{k}_ms": round(d[k] * 1000, 1) for k in ("p50", "p90", "p99", "max")}}
    return json.dumps(out)


# -- main -------------------------------------------------------------------------------------------------


async def _pg(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main(options: argparse.Namespace) -> None:
    statuses = await install.install(TOOLS)
    if not all(s.ok for s in statuses if s.agent == "claude"):
        raise SystemExit(f"cannot install claude: {statuses}")
    database_url, pg_name = options.database_url, None
    if options.postgres:
        pg_name = f"replicas_bench_{uuid.uuid4().hex[:12]}"
        await _pg(options.postgres, f'CREATE DATABASE "{pg_name}"')
        database_url = f"{options.postgres.rsplit('/', 1)[0]}/{pg_name}"
    database = "postgresql" if database_url and database_url.startswith("postgres") else "sqlite"
    try:
        with tempfile.TemporaryDirectory(prefix="replicas-api-bench-") as scratch:
            root = Path(scratch)
            origin = make_repo(root / "origin", 20)
            server = Server(root, database_url, options.log_level)
            async with ScriptedModelServer() as model:
                await server.start()
                replica_id = None
                try:
                    async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
                        replica_id = await create_replica(client, origin, model)
                        reads = []
                        for name, path in [("GET /v1/replica/{id}", f"/v1/replica/{replica_id}"),
                                           ("GET /v1/replica/{id}/history", f"/v1/replica/{replica_id}/history"),
                                           ("GET /v1/replica (list)", "/v1/replica")]:
                            for concurrency, count in [(1, max(1, options.requests // 20)),
                                                       (options.concurrency, options.requests)]:
                                result = await load(server.base, name, path, concurrency, count, options.duration,
                                                    server.process)
                                result.concurrency = concurrency
                                if result.errors:
                                    print(f"{name} x{concurrency}: {len(result.errors)} errors, first: "
                                          f"{result.errors[0]}")
                                reads.append(result)
                        try:
                            sse = await sse_delays(server.base, replica_id, model, options.sse_clients,
                                                   options.turns, options.shell_calls, server.process)
                        except Exception:
                            print_tables(reads, None, database)
                            raise
                    print_tables(reads, sse, database)
                    print(summary_json(reads, sse, database))
                except BaseException:
                    kept = Path(tempfile.gettempdir()) / "replica_api_bench-serve.log"
                    if server.log_path.exists():
                        kept.write_text(server.log_path.read_text())
                    print(f"--- serve.log (tail; whole log kept in {kept}) ---\n{server.tail()}", file=sys.stderr)
                    raise
                finally:
                    if replica_id is not None and server.process and server.process.poll() is None:
                        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
                            deleted = await client.delete(f"/v1/replica/{replica_id}")
                            if deleted.status_code != 200:
                                print(f"delete {replica_id}: {deleted.status_code} {deleted.text[:200]}",
                                      file=sys.stderr)
                    server.stop()
    finally:
        if pg_name:
            await _pg(options.postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent GET clients (default 32)")
    parser.add_argument("--requests", type=int, default=2000,
                        help="GET requests per endpoint at --concurrency (default 2000; 1/20 of it with one client)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="at most this many seconds per endpoint and client count (default 30)")
    parser.add_argument("--sse-clients", type=int, default=100, help="concurrent SSE clients (default 100)")
    parser.add_argument("--turns", type=int, default=3, help="scripted turns while the SSE clients listen")
    parser.add_argument("--shell-calls", type=int, default=4, help="text + shell-call steps per turn")
    parser.add_argument("--log-level", default="warning",
                        help="the server's REPLICAS_LOG_LEVEL (default warning: no access log line per request)")
    database = parser.add_mutually_exclusive_group()
    database.add_argument("--database-url", default=None, help="REPLICAS_DATABASE_URL for the server")
    database.add_argument("--postgres", nargs="?", const=PG_ADMIN_URL, default=None, metavar="ADMIN_URL",
                          help=f"create a fresh PostgreSQL database via ADMIN_URL (default {PG_ADMIN_URL}), "
                               "drop it at the end")
    asyncio.run(main(parser.parse_args()))
