"""integrations: per-organization verification secrets for the inbound webhook receivers

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('integration_secrets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_integration_secrets_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_secrets')),
    sa.UniqueConstraint('organization_id', 'provider',
                        name=op.f('uq_integration_secrets_organization_id_provider'))
    )
    with op.batch_alter_table('integration_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_integration_secrets_organization_id'), ['organization_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('integration_secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_integration_secrets_organization_id'))

    op.drop_table('integration_secrets')
