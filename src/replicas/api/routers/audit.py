"""Router placeholder: filled in by its issue-2 work item."""

from fastapi import APIRouter

from replicas.api.schemas.common import ERROR_RESPONSES

router = APIRouter(tags=["Audit Log"], responses=ERROR_RESPONSES)
