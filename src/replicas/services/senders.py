"""Who sent each user message: the `senders` of GET /v1/replica/{id}/history (the contract's ChatMessageSender).

The sender is decided when a message is sent and travels with it to the engine, which journals it on the
`chat.turn.delta` that opens the turn with the user's message (engine/chats.py). History reads it back from
there, so a sender is recorded exactly for the user messages that reached the agent, and `recordedAt` is
the timestamp of that message's event: a client labels a user message with the sender whose `recordedAt`
equals the event's `timestamp`.

A personal key sends as its user, whatever the body claims. An org key acts for the organization's bot and
has no user: a team's integration (a Slack bot, a dashboard of its own) may name the person it sends for
with the body's `senderUserId` and `senderEmail`, as the contract allows; without both, nobody is recorded.
"""

from __future__ import annotations

from typing import Any

from replicas.services.principal import Principal


def message_sender(principal: Principal, claimed_user_id: str | None = None,
                   claimed_email: str | None = None) -> dict[str, str] | None:
    """`{senderUserId, senderEmail}` for a message sent by `principal`, or None when nobody can be named.
    A personal key's Principal carries its user's email as `display` (auth.authenticate)."""
    if principal.user_id is not None:
        return {"senderUserId": str(principal.user_id), "senderEmail": principal.display}
    if claimed_user_id and claimed_email:
        return {"senderUserId": claimed_user_id, "senderEmail": claimed_email}
    return None


def recorded_senders(deltas: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The ChatMessageSender of each user message among these `chat.turn.delta` payloads, in order."""
    return [{**delta["sender"], "recordedAt": delta["event"]["timestamp"]} for delta in deltas
            if isinstance(delta.get("sender"), dict) and isinstance(delta.get("event"), dict)]
