"""engine_protocol.py: what the engine reports at `/health`, and which answers a control plane refuses."""

from __future__ import annotations

import pytest

from replicas import __version__
from replicas.engine_protocol import ENGINE_PROTOCOL, SUPPORTED_ENGINE_PROTOCOLS, incompatibility
from tests.engine.conftest import fake_tools, home, make_engine  # noqa: F401 - fixtures

NEEDS = f"this control plane (replicas {__version__}) needs engine protocol {ENGINE_PROTOCOL}"


async def test_the_engine_reports_its_release_and_protocol_at_health(make_engine, fake_tools):  # noqa: F811
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        health = (await client.get("/health")).json()
    # What it answered before stays; the release and the protocol are added.
    assert health["status"] == "ok" and health["version"] == "v1" and isinstance(health["lastSeq"], int)
    assert (health["ok"], health["engineVersion"], health["protocol"]) == (True, __version__, ENGINE_PROTOCOL)
    assert incompatibility(health, image="any") is None


def test_this_releases_engine_speaks_a_protocol_this_control_plane_supports():
    assert ENGINE_PROTOCOL in SUPPORTED_ENGINE_PROTOCOLS == frozenset({2})


@pytest.mark.parametrize(("health", "reports"), [
    ({"status": "ok", "version": "v1", "lastSeq": 3},
     "an engine of unknown version, which reports no protocol version (older than this check)"),
    ({"status": "ok", "engineVersion": "0.0.9", "protocol": 0}, "engine 0.0.9, which reports protocol 0"),
    ({"status": "ok", "engineVersion": "0.1.0", "protocol": 1}, "engine 0.1.0, which reports protocol 1"),
    ({"status": "ok", "engineVersion": "3.0.0", "protocol": 3}, "engine 3.0.0, which reports protocol 3"),
    ({"status": "ok", "engineVersion": "1.0", "protocol": "1"},
     "engine 1.0, which reports no protocol version (older than this check)"),
    ({"status": "ok", "protocol": True}, "an engine of unknown version, which reports no protocol version "
                                         "(older than this check)"),
])
def test_an_engine_of_another_protocol_is_refused_naming_the_image_and_the_fix(health, reports):
    assert incompatibility(health, image="acme/workspace:old") == (
        f"image acme/workspace:old runs {reports}; {NEEDS}: rebuild it with `replicas images build`")


def test_without_an_image_the_fix_is_this_installation():
    assert incompatibility({"protocol": 0}, image=None) == (
        f"the workspace runs an engine of unknown version, which reports protocol 0; {NEEDS}: reinstall replicas")
    assert incompatibility({"protocol": ENGINE_PROTOCOL}) is None
    assert incompatibility([], image="x") is not None  # not even a JSON object
