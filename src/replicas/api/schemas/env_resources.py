"""Environment variables, files and MCPs: request/response models and views (contract tag Environments).

Secrets are stored encrypted; the views decrypt them, because the contract returns values, file
contents and MCP configs in plaintext to callers allowed to see the environment.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from replicas.api.schemas.common import Request, iso
from replicas.crypto import SecretBox
from replicas.store.models import EnvironmentFile as FileRow
from replicas.store.models import EnvironmentMcp as McpRow
from replicas.store.models import EnvironmentVariable as VariableRow

Transport = Literal["stdio", "http", "sse"]


class _Nested(BaseModel):
    id: str
    organization_id: str
    environment_id: str
    created_at: str
    updated_at: str


# --- variables ---------------------------------------------------------------------------------

class EnvironmentVariable(_Nested):
    key: str
    value: str
    personal_override_allowed: bool


class EnvironmentVariableResponse(BaseModel):
    environment_variable: EnvironmentVariable


class ListEnvironmentVariablesResponse(BaseModel):
    environment_variables: list[EnvironmentVariable]


class CreateEnvironmentVariableRequest(Request):
    key: str
    value: str
    personal_override_allowed: bool | None = None


class UpdateEnvironmentVariableRequest(Request):
    key: str | None = None
    value: str | None = None
    personal_override_allowed: bool | None = None


# --- files ---------------------------------------------------------------------------------------

class EnvironmentFile(_Nested):
    name: str
    path: str
    content: str


class EnvironmentFileResponse(BaseModel):
    environment_file: EnvironmentFile


class ListEnvironmentFilesResponse(BaseModel):
    environment_files: list[EnvironmentFile]


class CreateEnvironmentFileRequest(Request):
    name: str
    path: str
    content: str


class UpdateEnvironmentFileRequest(Request):
    name: str | None = None
    path: str | None = None
    content: str | None = None


# --- MCPs ----------------------------------------------------------------------------------------

class EnvironmentMcp(_Nested):
    name: str
    transport: Transport
    config: dict[str, Any]


class EnvironmentMcpResponse(BaseModel):
    environment_mcp: EnvironmentMcp


class ListEnvironmentMcpsResponse(BaseModel):
    environment_mcps: list[EnvironmentMcp]


class CreateEnvironmentMcpRequest(Request):
    name: str
    transport: Transport
    # The shape depends on `transport`, so the service checks it (and names the offending field).
    config: dict[str, Any]


class UpdateEnvironmentMcpRequest(Request):
    name: str | None = None
    transport: Transport | None = None
    config: dict[str, Any] | None = None


# --- views ---------------------------------------------------------------------------------------

def _common(row) -> dict:
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "environment_id": str(row.environment_id),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def variable_view(row: VariableRow, box: SecretBox) -> dict:
    return {**_common(row), "key": row.key, "value": box.decrypt(row.value_encrypted),
            "personal_override_allowed": row.personal_override_allowed}


def file_view(row: FileRow, box: SecretBox) -> dict:
    return {**_common(row), "name": row.name, "path": row.path,
            "content": box.decrypt(row.content_encrypted)}


def mcp_view(row: McpRow, box: SecretBox) -> dict:
    return {**_common(row), "name": row.name, "transport": row.transport,
            "config": json.loads(box.decrypt(row.config_encrypted))}
