"""Entry point of the workspace engine: `python -m replicas.engine.main [--socket PATH | --tcp HOST:PORT]`.

Configuration comes from the environment the runtime starts it with (`EngineConfig.from_env`):
REPLICAS_ENGINE_SECRET (required), REPLICAS_ENGINE_SOCKET (the default socket), HOME or `--home`,
REPLICAS_ENGINE_TCP (HOST:PORT, instead of the socket; what `--tcp` sets) and REPLICAS_ENGINE_PORT_FILE.

On TCP, port 0 takes a free port; the port bound is written to REPLICAS_ENGINE_PORT_FILE (atomically,
once listening) so that a runtime that cannot choose a free port itself (a container on a remote Docker
host's network) learns where the engine is.

`--version` prints the release and the engine protocol (engine_protocol.py) and exits: what an image
carries, without starting anything (`docker run --rm IMAGE ... -m replicas.engine.main --version`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import uvicorn

from replicas import long_lived
from replicas.engine.server import Engine, create_app
from replicas.engine.state import EngineConfig
from replicas.engine_protocol import ENGINE_PROTOCOL, engine_health

logger = logging.getLogger("replicas.engine")


def parse_tcp(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


UDS_PATH_LIMIT = 100


async def serve(config: EngineConfig, socket: Path | None = None, tcp: tuple[str, int] | None = None,
                port_file: Path | None = None) -> None:
    """Run the engine until SIGINT/SIGTERM, on a unix socket or a TCP address."""
    engine = Engine(config)
    # Started before its home is laid out (a cold create): wait here, imports done, before uvicorn takes over
    # SIGTERM, which then still ends the process at once.
    await engine.home_ready()
    app = create_app(engine)
    # An open event stream must not hold up a SIGTERM: streams are cut after a short grace period.
    options: dict = {"log_level": "warning", "lifespan": "on", "access_log": False, "timeout_graceful_shutdown": 3}
    if tcp is not None:
        options.update(host=tcp[0], port=tcp[1])
    else:
        if socket is None:
            raise SystemExit("no socket: pass --socket, --tcp, or set REPLICAS_ENGINE_SOCKET")
        socket.parent.mkdir(parents=True, exist_ok=True)
        if socket.exists() or socket.is_symlink():
            socket.unlink()  # left behind by an engine that was killed
        # sun_path holds about 108 bytes; a deep data dir exceeds it. Bind relative to the socket's
        # directory instead (the engine resolves every other path absolutely).
        if len(os.fsencode(str(socket))) > UDS_PATH_LIMIT:
            os.chdir(socket.parent)
            options["uds"] = socket.name
        else:
            options["uds"] = str(socket)
    server = long_lived.Server(uvicorn.Config(app, **options))
    if tcp is None or port_file is None:
        await server.serve()
        return
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        port_file.parent.mkdir(parents=True, exist_ok=True)
        partial = port_file.with_name(port_file.name + ".partial")
        partial.write_text(f"{port}\n")
        partial.replace(port_file)
        logger.info("engine listening on %s:%s", tcp[0], port)
    await serving


def run(socket: str | None = None, home: str | None = None, tcp: str | None = None) -> None:
    """Start the engine with the process environment (what `replicas engine` calls)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = EngineConfig.from_env(os.environ, Path(home) if home else None)
    if not config.secret:
        raise SystemExit("REPLICAS_ENGINE_SECRET is required")
    tcp = tcp or os.environ.get("REPLICAS_ENGINE_TCP")
    socket = socket or os.environ.get("REPLICAS_ENGINE_SOCKET")
    port_file = os.environ.get("REPLICAS_ENGINE_PORT_FILE")
    logger.info("engine starting workspace_id=%s home=%s version=%s protocol=%s", config.workspace_id,
                config.home, engine_health()["engineVersion"], ENGINE_PROTOCOL)
    asyncio.run(serve(config, Path(socket) if socket and not tcp else None, parse_tcp(tcp) if tcp else None,
                      Path(port_file) if port_file else None))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="replicas engine", description="The in-workspace engine daemon.")
    parser.add_argument("--socket", help="unix socket path (default: REPLICAS_ENGINE_SOCKET)")
    parser.add_argument("--home", help="workspace home (default: HOME)")
    parser.add_argument("--tcp", help="HOST:PORT to listen on instead of a unix socket")
    parser.add_argument("--version", action="version",
                        version=f"replicas engine {engine_health()['engineVersion']} (protocol {ENGINE_PROTOCOL})")
    args = parser.parse_args(argv)
    run(args.socket, args.home, args.tcp)


if __name__ == "__main__":
    main(sys.argv[1:])
