"""workspace auto stop: a per-workspace inactivity timer (an automation's workspace_auto_stop_minutes)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_stop_minutes', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.drop_column('auto_stop_minutes')
