"""OpenTelemetry traces (REPLICAS_OTEL_*): an app with tracing on sends a span per API request, named by its route
template with its status, and a span per engine call, to an OTLP/HTTP collector. The collector is a stand-in on
loopback that decodes the real protobuf export requests. Off (the default), nothing is sent."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the `otel` extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from replicas.api.app import create_app  # noqa: E402
from replicas.errors import ReplicasError  # noqa: E402
from replicas.settings import Settings  # noqa: E402
from replicas.store.models import Workspace  # noqa: E402
from tests.conftest import _client  # noqa: E402

KEY = "sk_replicas_" + "t" * 40


class Collector:
    """An OTLP/HTTP traces endpoint on loopback: every span it was sent, as (name, attributes, status code)."""

    def __init__(self):
        self.spans: list[tuple[str, dict, int]] = []
        self.content_types: set[str] = set()
        self.paths: set[str] = set()
        self.services: set[str] = set()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.content_types.add(self.headers["Content-Type"])
                collector.paths.add(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    collector.services.update(a.value.string_value for a in resource.resource.attributes
                                              if a.key == "service.name")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                            collector.spans.append((span.name, attributes, span.status.code))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def named(self, name: str) -> list[tuple[str, dict, int]]:
        return [span for span in self.spans if span[0] == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def settings_for(tmp_path, postgres_url: str, **otel) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=postgres_url, cron_enabled=False, pool_enabled=False,
                    boot_takeover_enabled=False,
                    bootstrap_api_key=KEY, **otel)


async def test_requests_and_engine_calls_are_traced_to_the_collector(tmp_path, postgres_url, collector):
    app = create_app(settings_for(tmp_path, postgres_url, otel_enabled=True, otel_endpoint=collector.url))
    async with app.router.lifespan_context(app):
        async with _client(app, KEY) as client:
            assert (await client.get("/v1/replica")).status_code == 200
            assert (await client.get(f"/v1/replica/{uuid.uuid4()}")).status_code == 404
        # An engine call: this workspace has no engine to reach, so the call fails, and its span says so.
        nowhere = Workspace(id=uuid.uuid4(), organization_id=uuid.uuid4(), name="nowhere", status="active")
        with pytest.raises((ReplicasError, LookupError, TypeError, ValueError, AttributeError)):
            await app.state.replicas.manager.call_engine(nowhere, "GET", "/health")
    # The app's shutdown sent what was buffered.
    listed = collector.named("GET /v1/replica")
    assert listed and listed[0][1]["http.route"] == "/v1/replica" and listed[0][1]["http.response.status_code"] == 200
    missing = collector.named("GET /v1/replica/{replica_id}")
    assert missing and missing[0][1]["http.response.status_code"] == 404
    # (Only this call's span: on the shared PostgreSQL database the app may reach other tests' engines too.)
    engine = [span for span in collector.named("engine GET")
              if span[1].get("replicas.workspace_id") == str(nowhere.id)]
    assert engine and engine[0][1]["url.path"] == "/health"
    assert engine[0][2] == 2  # STATUS_CODE_ERROR
    assert collector.content_types == {"application/x-protobuf"}
    assert not any(KEY in str(attributes) for _, attributes, _ in collector.spans)


async def test_no_span_leaves_when_tracing_is_off(tmp_path, postgres_url, collector):
    app = create_app(settings_for(tmp_path, postgres_url, otel_endpoint=collector.url))
    async with app.router.lifespan_context(app):
        async with _client(app, KEY) as client:
            assert (await client.get("/v1/replica")).status_code == 200
    assert collector.spans == []



async def test_the_standard_otel_endpoint_variable_turns_traces_on(tmp_path, postgres_url, collector, monkeypatch):
    """`OTEL_EXPORTER_OTLP_ENDPOINT`, as for any OpenTelemetry program: the exporter adds `/v1/traces`."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.removesuffix("/v1/traces"))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "replicas-eu")
    app = create_app(settings_for(tmp_path, postgres_url))
    async with app.router.lifespan_context(app):
        async with _client(app, KEY) as client:
            assert (await client.get("/v1/replica")).status_code == 200
    assert collector.named("GET /v1/replica")
    assert collector.paths == {"/v1/traces"} and collector.services == {"replicas-eu"}
