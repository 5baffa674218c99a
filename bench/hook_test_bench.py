"""What a hook test costs now that it runs in a sandbox: `POST .../start-hooks/test` of a trivial script, per backend.

    .venv/bin/python -m bench.hook_test_bench [--backends local,docker] [--files 1000] [--runs 10] [--dir DIR]

One scratch data dir and SQLite database, the real app over ASGI, an environment bound to `checkout_bench`'s
generated repository of N files, and one organization key. Per run, backends interleaved: the request's
round trip, which is the whole sandbox's life (provision the throwaway workspace, check the repository out,
write variables and files, run `true`, destroy it). One untimed warm-up per backend fills the mirror. The docker
backend uses the test base image (tests/docker_support.py) with the engine's Python bind-mounted, as the docker
tests do. Prints p50/p90/max per backend and one JSON line; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.checkout_bench import make_origin
from replicas.api.app import create_app
from replicas.services import auth
from replicas.settings import Settings


def backend_overrides(backend: str) -> dict:
    if backend == "docker":
        from tests.docker_support import BASE_IMAGE_TAG, ensure_base_image

        reason = ensure_base_image()
        if reason:
            raise SystemExit(f"docker backend unavailable: {reason}")
        return {"runtime": "docker", "docker_image": BASE_IMAGE_TAG, "docker_network": "host"}
    return {"runtime": "local"}


async def measure(backend: str, origin: Path, root: Path, runs: int) -> list[float]:
    settings = Settings(data_dir=root / backend, cron_enabled=False, **backend_overrides(backend))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session:
            org = await auth.get_or_create_organization(session, "bench")
            key = await auth.create_org_key(session, org, name="bench")
            await session.commit()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
            repo = (await client.post("/v1/replica/repositories",
                                      json={"name": "bench/origin", "url": str(origin)})).json()["repository"]
            env = (await client.post("/v1/environments", json={"name": "bench", "repository_id": repo["id"]}))
            env_id = env.json()["environment"]["id"]
            await client.post(f"/v1/environments/{env_id}/variables", json={"key": "BENCH", "value": "1"})
            url = f"/v1/environments/{env_id}/start-hooks/test"
            times = []
            for run in range(runs + 1):
                started = time.perf_counter()
                response = await client.post(url, json={"content": "true\n"})
                elapsed = time.perf_counter() - started
                assert response.status_code == 200 and response.json()["test"]["exit_code"] == 0, response.text
                if run:  # the first one is the warm-up
                    times.append(elapsed)
            return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50": round(statistics.median(ordered), 3), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
            "max": round(ordered[-1], 3), "runs": len(ordered)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    origin = await make_origin(Path(args.dir) / "replicas-checkout-bench", args.files)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="replicas-hook-bench-") as scratch:
        for backend in args.backends.split(","):
            results[backend] = summary(await measure(backend, origin, Path(scratch), args.runs))
            print(f"{backend:8s} hook test round trip ({args.files} files): {results[backend]}")
    print(json.dumps({"files": args.files, "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
