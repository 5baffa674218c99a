"""replica tombstones: a deleted replica's id, organization and time, kept a day so that a status stream resuming
after the deletion still reports it

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-03 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replica_tombstones',
    sa.Column('replica_id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_replica_tombstones_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('replica_id', name=op.f('pk_replica_tombstones'))
    )
    with op.batch_alter_table('replica_tombstones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replica_tombstones_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_replica_tombstones_deleted_at'), ['deleted_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('replica_tombstones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replica_tombstones_deleted_at'))
        batch_op.drop_index(batch_op.f('ix_replica_tombstones_organization_id'))
    op.drop_table('replica_tombstones')
