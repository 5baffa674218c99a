"""A server process's start-up objects, kept out of the garbage collector's sight.

What a process makes while it starts (modules, routes, schemas, the ORM's metadata, the engine's chats) lives as
long as it does; Python's full (gen-2) collections would walk all of it, again and again, with the event loop
stopped. `Server` is uvicorn's, which once started collects once and freezes what is left (`gc.freeze`): later
full collections walk only what requests made since. Measured with `bench.scale_bench` (one control plane at
200 req/s): without it, gen-2 pauses of 60-210 ms in the middle of the load and a p99 of 240-480 ms; with it,
p99 about 12 ms. Both the control plane (`replicas serve`) and the workspace engine use it.
"""

from __future__ import annotations

import gc

import uvicorn


class Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()
