"""Who is calling: every service call takes a Principal and scopes its queries to its organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Org API keys (`user_id` None) act as the organization's bot with admin rights, since only org
    admins can mint them. Personal keys act as their user, with that user's role.
    """

    organization_id: uuid.UUID
    api_key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    role: str
    display: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor_type(self) -> str:
        return "user" if self.user_id else "api_key"

    @property
    def actor_id(self) -> str | None:
        return str(self.user_id or self.api_key_id) if (self.user_id or self.api_key_id) else None

    @classmethod
    def system(cls, organization_id: uuid.UUID) -> Principal:
        return cls(organization_id, None, None, "admin", "system")
