"""Request bodies of the Replica API (contract tag Replica). Responses are built by
`services/replica_views.py` and validated against the contract in the tests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from replicas.api.schemas.common import Request
from replicas.services.replica_requests import SUPPORTED_AGENTS

AnyAgent = Literal["claude", "codex", "cursor", "opencode", "pi"]
ThinkingLevel = Literal["low", "medium", "high", "xhigh", "max", "ultra", "ultracode"]
LifecyclePolicy = Literal["default", "archive_when_done", "sleep_when_done", "delete_when_done",
                          "delete_after_inactivity"]
Size = Literal["small", "large"]
Source = Literal["api", "dashboard", "slack", "linear", "github", "gitlab", "automation"]
Status = Literal["active", "sleeping", "archived", "preparing", "error"]


class ImageSource(Request):
    type: Literal["base64", "url"]
    media_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp"] | None = None
    data: str | None = None
    url: str | None = None


class ImageContent(Request):
    type: Literal["image"]
    source: ImageSource

    @field_validator("source")
    @classmethod
    def _complete(cls, source: ImageSource) -> ImageSource:
        if source.type == "base64" and not (source.media_type and source.data):
            raise ValueError("a base64 image needs media_type and data")
        if source.type == "url" and not source.url:
            raise ValueError("a url image needs url")
        return source


class WebhookConfig(Request):
    url: str = Field(min_length=1)
    secret: str | None = None


def _agent(value: str | None) -> str | None:
    if value is not None and value not in SUPPORTED_AGENTS:
        raise ValueError(f"{value!r} is not available on this server (one of {', '.join(SUPPORTED_AGENTS)})")
    return value


# The contract's enum, of which this server runs the agents it has drivers for (no `pi` yet).
CodingAgent = Annotated[AnyAgent, AfterValidator(_agent)]


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value


class MessageFields(Request):
    model: str | None = None
    images: list[ImageContent] | None = None
    plan_mode: bool | None = None
    goal_mode: bool | None = None
    fast_mode: bool | None = None
    thinking_level: ThinkingLevel | None = None

    def options(self) -> dict[str, Any]:
        images = [image.model_dump(exclude_none=True) for image in self.images] if self.images else None
        return {"model": self.model, "images": images, "plan_mode": self.plan_mode, "goal_mode": self.goal_mode,
                "fast_mode": self.fast_mode, "thinking_level": self.thinking_level}


class CreateReplicaRequest(MessageFields):
    name: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    message: str = Field(min_length=1)
    environment_id: str | None = None
    repository_set_id: str | None = None
    repository_ids: list[str] | None = None
    coding_agent: CodingAgent = "claude"
    lifecycle_policy: LifecyclePolicy | None = None
    config: dict[str, Any] | None = None
    webhook_url: str | WebhookConfig | None = None
    size: Size | None = None


    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value):
        if isinstance(value, str):
            _url(value)
        elif value is not None:
            _url(value.url)
        return value

    def webhook(self) -> tuple[str | None, str | None]:
        if isinstance(self.webhook_url, WebhookConfig):
            return self.webhook_url.url, self.webhook_url.secret
        return self.webhook_url, None


class SendReplicaMessageRequest(MessageFields):
    message: str = Field(min_length=1)
    coding_agent: CodingAgent | None = None
    chat_id: str | None = None
    senderUserId: str | None = None
    senderEmail: str | None = None



class CreateChatRequest(Request):
    provider: CodingAgent
    id: str | None = None
    createdAt: str | None = None
    title: str | None = Field(default=None, max_length=255)
    parentChatId: str | None = None
    clientRequestId: str | None = None


    def engine_body(self) -> dict[str, Any]:
        return {key: value for key, value in {"provider": self.provider, "id": self.id, "title": self.title,
                                              "clientRequestId": self.clientRequestId}.items() if value}


class ReorderQueueRequest(Request):
    messageId: str = Field(min_length=1)
    position: int = Field(ge=0)


class WorkspaceMessageFields(Request):
    """The camelCase message options of the `/v1/workspaces/*` family."""

    message: str = Field(min_length=1)
    messageId: str | None = None
    submittedAt: str | None = None
    model: str | None = None
    images: list[ImageContent] | None = None
    planMode: bool | None = None
    goalMode: bool | None = None
    fastMode: bool | None = None
    thinkingLevel: ThinkingLevel | None = None

    def options(self) -> dict[str, Any]:
        images = [image.model_dump(exclude_none=True) for image in self.images] if self.images else None
        return {"model": self.model, "images": images, "plan_mode": self.planMode, "goal_mode": self.goalMode,
                "fast_mode": self.fastMode, "thinking_level": self.thinkingLevel}


class SendDeferredMessageRequest(WorkspaceMessageFields):
    provider: CodingAgent
    chatId: str | None = None
    generateName: bool | None = None

