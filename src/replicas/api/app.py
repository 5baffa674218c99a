"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import IntegrityError

from replicas import __version__, metrics, outbound, tracing
from replicas.api.errors import error_response, install_error_handlers
from replicas.api.observability import Observability
from replicas.api.proxy import mount_preview_proxy
from replicas.api.responses import JSONBody
from replicas.api.routers import ROUTERS, replica_extensions, sessions
from replicas.api.url_text import RefuseNulInUrl
from replicas.crypto import SecretBox
from replicas.dashboard import mount_dashboard
from replicas.services import auth, loops, team_watcher
from replicas.services import automations as automation_service
from replicas.services.cron_scheduler import start_cron_scheduler, stop_cron_scheduler
from replicas.services.replicas import ReplicaService
from replicas.settings import Settings, get_settings
from replicas.store.db import make_engine, make_sessionmaker, migrate, session_scope

log = logging.getLogger("replicas")

API_VERSION_HEADER = "X-Replicas-Api-Version"
SUPPORTED_API_VERSIONS = frozenset({"2026-05-17"})


class ApiVersion:
    """`X-Replicas-Api-Version`: a version we do not serve is refused (400); one we serve is echoed on the
    response. A plain ASGI middleware: no per-request task, and streams pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        requested = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-replicas-api-version"), None)
        if requested is not None and requested not in SUPPORTED_API_VERSIONS:
            response = error_response(400, f"Unsupported {API_VERSION_HEADER}",
                                      f"{requested!r} is not one of: {', '.join(sorted(SUPPORTED_API_VERSIONS))}")
            return await response(scope, receive, send)
        if requested is None:
            return await self.app(scope, receive, send)

        async def echoing(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (API_VERSION_HEADER.lower().encode(), requested.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, echoing)


async def _announce_first_key(sessions) -> None:
    try:
        async with session_scope(sessions) as session:
            key = await auth.first_key(session)
    except IntegrityError:  # another process of this store minted it at the same moment: it says so itself
        return
    if key:
        log.warning("no API key existed: created the first one, for the `default` organization (shown this once; "
                    "sign in to the dashboard with it, or `replicas login --key`): %s", key)


def create_app(settings: Settings | None = None, *, announce_first_key: bool = False) -> FastAPI:
    """Build the app. Start-up migrates the store and applies `REPLICAS_BOOTSTRAP_API_KEY`.

    `announce_first_key` (`replicas serve`): on a store without any API key, mint one for the `default`
    organization and log it once, so that a first `make run` can be signed in to."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        policy = outbound.install(settings)  # the outbound policy of code with no Settings at hand (git, webhooks)
        tracing.configure(settings)  # off unless REPLICAS_OTEL_ENABLED
        settings.ensure_data_dir()
        engine = make_engine(settings.resolved_database_url)
        await migrate(engine)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        app.state.box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        if settings.bootstrap_api_key:
            async with session_scope(app.state.sessions) as session:
                await auth.bootstrap(session, settings.bootstrap_api_key)
        elif announce_first_key:
            await _announce_first_key(app.state.sessions)
        app.state.replicas = ReplicaService(settings, app.state.sessions, app.state.box)
        await app.state.replicas.start()
        app.state.automation_reconciler = automation_service.start_reconciler(app.state)
        app.state.team_watcher = team_watcher.start(app.state)  # the team loop's replies, batches and archives
        app.state.cron_scheduler = start_cron_scheduler(app.state) if settings.cron_enabled else None
        log.info("replicas control plane ready database=%s runtime=%s",
                 engine.url.get_backend_name(), settings.runtime)
        try:
            yield
        finally:
            await stop_cron_scheduler(app.state.cron_scheduler)
            await automation_service.stop_reconciler(app.state.automation_reconciler)
            await loops.cancel(app.state.team_watcher)
            await app.state.preview_proxy.aclose()
            await app.state.replicas.stop()
            await engine.dispose()
            outbound.uninstall(policy)
            await asyncio.to_thread(tracing.shutdown)  # sends what is buffered (blocking I/O: off the loop)

    app = FastAPI(
        title="Replicas (self-hosted Replica API)",
        version=__version__,
        description="Drop-in compatible with the hosted Replica API v1 (contract 2.0.0).",
        lifespan=lifespan,
        default_response_class=JSONBody,  # orjson (api/responses.py)
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RefuseNulInUrl)

    app.add_middleware(ApiVersion)
    app.add_middleware(Observability)  # outermost: times and counts every request, binds the log context

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok", "version": __version__}

    if settings.metrics_enabled:
        @app.get("/metrics", include_in_schema=False)
        async def metrics_endpoint(request: Request) -> Response:
            await metrics.refresh(request.app.state.sessions)
            metrics.PUMP_LAG.clear()
            for workspace_id, lag in (await request.app.state.replicas.pump_lags()).items():
                metrics.PUMP_LAG.labels(workspace_id=workspace_id).set(lag)
            return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    for router in ROUTERS:
        app.include_router(router)
    app.include_router(sessions.router)
    app.include_router(replica_extensions.router)
    mount_dashboard(app)
    mount_preview_proxy(app)
    return app
