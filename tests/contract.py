"""Validate real responses against the wire contract (replicas-openapi-2.0.0.json) with JSON Schema."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT_PATH = Path(__file__).parent / "contract" / "replicas-openapi-2.0.0.json"
_URN = "urn:replicas-contract"


@lru_cache
def contract() -> dict:
    return json.loads(CONTRACT_PATH.read_text())


@lru_cache
def _registry() -> Registry:
    return Registry().with_resource(_URN, Resource.from_contents(contract(), default_specification=DRAFT202012))


def _validator(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def _rebase(schema: dict) -> dict:
    """Point local `#/...` refs at the contract document."""
    text = json.dumps(schema).replace('"$ref": "#/', f'"$ref": "{_URN}#/')
    return json.loads(text)


def validate_schema(instance, schema_name: str) -> None:
    """Validate `instance` against `components.schemas[schema_name]`; raise with every error listed."""
    _check(instance, {"$ref": f"{_URN}#/components/schemas/{schema_name}"}, schema_name)


def response_schema(path: str, method: str, status: int) -> dict | None:
    operation = contract()["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    if response is None:
        raise AssertionError(f"contract lists no {status} for {method.upper()} {path}")
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = contract()["components"]["responses"][name]
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return _rebase(schema) if schema else None


def _check(instance, schema: dict, label: str) -> None:
    errors = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors[:20])
        raise AssertionError(f"response does not match the contract ({label}):\n{lines}")


def assert_contract(response: httpx.Response, path: str, method: str | None = None) -> dict:
    """Assert the response's status is one the contract lists for the operation, and its JSON body
    validates against that status's schema. Returns the body."""
    method = (method or response.request.method).lower()
    schema = response_schema(path, method, response.status_code)
    body = response.json()
    if schema is not None:
        _check(body, schema, f"{method.upper()} {path} {response.status_code}")
    if response.status_code >= 400:
        validate_schema(body, "Error")
    return body
