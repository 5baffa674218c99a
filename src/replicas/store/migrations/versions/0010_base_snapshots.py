"""base snapshots: an environment's warmed state per pool generation; live warm-up output of pool workspaces

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('base_snapshots',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('runtime_state', sa.JSON(), nullable=True),
    sa.Column('warm_hook_logs', sa.JSON(), nullable=True),
    sa.Column('repo_heads', sa.JSON(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_base_snapshots_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_base_snapshots'))
    )
    with op.batch_alter_table('base_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_base_snapshots_environment_id'), ['environment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_base_snapshots_organization_id'), ['organization_id'], unique=False)
    with op.batch_alter_table('warm_pool_workspaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('warm_pool_workspaces', schema=None) as batch_op:
        batch_op.drop_column('output')
    with op.batch_alter_table('base_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_base_snapshots_organization_id'))
        batch_op.drop_index(batch_op.f('ix_base_snapshots_environment_id'))
    op.drop_table('base_snapshots')
