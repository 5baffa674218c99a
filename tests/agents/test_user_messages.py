"""Each driver's event for the user's own message: the provider's shape (contract AgentEvent), the text as sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicas.engine.agents import ClaudeDriver, CodexDriver, CursorDriver, OpencodeDriver, TurnRequest
from tests.contract import validate_schema

PNG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
LINK = {"type": "image", "source": {"type": "url", "url": "https://example.com/shot.png"}}
TEXT = 'Fix "it" \n$HOME -- now'


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def request(**fields) -> TurnRequest:
    return TurnRequest(prompt=TEXT, cwd=Path("/tmp"), env={}, **fields)


@pytest.mark.parametrize("driver", [ClaudeDriver(), CodexDriver(), CursorDriver(), OpencodeDriver()],
                         ids=lambda d: d.provider)
def test_every_driver_has_a_contract_event_for_the_users_message(driver):
    for fields in ({}, {"resume_session_id": "s-1", "images": [PNG, LINK], "plan_mode": True}):
        event = driver.user_message_event(request(**fields))
        validate_schema(event.to_dict(), "AgentEvent")
        assert TEXT in _strings(event.payload)


def test_claude_user_carries_the_text_and_the_images_beside_it():
    payload = ClaudeDriver().user_message_event(request(images=[PNG], resume_session_id="s-1")).payload
    assert payload["type"] == "user" and payload["session_id"] == "s-1"
    assert payload["message"] == {"role": "user", "content": [{"type": "text", "text": TEXT}]}
    assert payload["images"] == [PNG]  # the contract's Claude blocks have no image block


def test_codex_user_message_is_the_text_without_the_plan_instruction():
    event = CodexDriver().user_message_event(request(plan_mode=True, images=[PNG, LINK]))
    assert event.type == "event_msg"
    assert event.payload == {"type": "user_message", "message": TEXT,
                             "images": ["data:image/png;base64,iVBORw0KGgo=", "https://example.com/shot.png"]}


def test_opencode_and_cursor_say_the_role_is_user():
    opencode = OpencodeDriver().user_message_event(request(images=[LINK])).payload
    assert opencode["info"]["role"] == "user"
    assert opencode["parts"] == [{"type": "text", "text": TEXT},
                                 {"type": "file", "mime": "image/*", "url": "https://example.com/shot.png"}]
    cursor = CursorDriver().user_message_event(request())
    assert cursor.type == "cursor-status" and cursor.payload["type"] == "user"
    assert cursor.payload["message"]["content"] == [{"type": "text", "text": TEXT}]
