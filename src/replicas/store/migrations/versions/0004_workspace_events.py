"""workspace events: the control plane's durable copy of each workspace's engine journal

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workspace_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                            name=op.f('fk_workspace_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_events')),
    sa.UniqueConstraint('workspace_id', 'seq', name=op.f('uq_workspace_events_workspace_id_seq'))
    )
    op.create_index('ix_workspace_events_workspace_seq', 'workspace_events', ['workspace_id', 'seq'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_workspace_events_workspace_seq', table_name='workspace_events')
    op.drop_table('workspace_events')
