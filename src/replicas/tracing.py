"""Optional OpenTelemetry traces of a control-plane process: a span per API request (api/observability.py) and
per engine call (services/workspaces.py), exported as OTLP/HTTP to a collector.

Off by default. OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it
on, as for any OpenTelemetry program, with the exporter reading its standard variables (headers, timeout,
`OTEL_SERVICE_NAME`). Or `REPLICAS_OTEL_ENABLED=true`, with `REPLICAS_OTEL_ENDPOINT` the collector's traces URL
(default `http://127.0.0.1:4318/v1/traces`) and `REPLICAS_OTEL_SERVICE_NAME` the service (default `replicas`).
The packages are the `otel` extra (`pip install 'replicas[otel]'`): turned on without them, the server says so
at start-up and runs without traces. Off, `span` costs one check.

    tracing.configure(settings)                        # the app's start-up
    with tracing.span("engine GET", **{"url.path": "/health"}):
        ...
    tracing.shutdown()                                 # the app's shutdown: what is buffered is sent

Spans carry route templates and paths, never bodies, headers or query strings (no secrets, as in logs.py). The
provider is this module's own, not OpenTelemetry's global one, so apps created one after another in a process
(the tests) each export to their own endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from replicas.settings import Settings

log = logging.getLogger("replicas.tracing")
_provider: Any = None
_tracer: Any = None


def configure(settings: Settings) -> None:
    """Start exporting spans when the settings ask for it (see the module docstring)."""
    global _provider, _tracer
    standard = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not settings.otel_enabled and not standard:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("traces are asked for but the OpenTelemetry packages are not installed "
                    "(pip install 'replicas[otel]'): no traces")
        return
    if settings.otel_enabled:
        exporter, endpoint = OTLPSpanExporter(endpoint=settings.otel_endpoint), settings.otel_endpoint
        resource = Resource.create({"service.name": settings.otel_service_name})
    else:  # the standard variables: the exporter and the resource read them
        exporter, endpoint = OTLPSpanExporter(), standard
        resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME")
                                   else {"service.name": settings.otel_service_name})
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer("replicas")
    log.info("tracing: OTLP/HTTP to %s", endpoint)


def enabled() -> bool:
    return _tracer is not None


@contextlib.contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[Any]:
    """A span around the block (the current span is its parent), or nothing when tracing is off. An exception
    marks it failed and goes on."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def shutdown() -> None:
    """Send what is buffered and stop; `configure` may start again."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()
