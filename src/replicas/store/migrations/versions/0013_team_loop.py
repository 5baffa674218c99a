"""team loop: providers' outbound credentials and loop options, the threads that lead to workspaces, and the
messages routed through them (deduplicated per delivery)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('integration_credentials',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('token_encrypted', sa.Text(), nullable=True),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_integration_credentials_organization_id_organizations'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_integration_credentials')),
    sa.UniqueConstraint('organization_id', 'provider',
                        name=op.f('uq_integration_credentials_organization_id_provider'))
    )
    with op.batch_alter_table('integration_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_integration_credentials_organization_id'), ['organization_id'],
                              unique=False)

    op.create_table('team_threads',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=True),
    sa.Column('environment_id', sa.Uuid(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('last_message_ts', sa.String(length=64), nullable=True),
    sa.Column('reply_after_seq', sa.Integer(), nullable=True),
    sa.Column('archive_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_team_threads_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
                            name=op.f('fk_team_threads_workspace_id_workspaces'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'],
                            name=op.f('fk_team_threads_environment_id_environments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_threads')),
    sa.UniqueConstraint('organization_id', 'key', name=op.f('uq_team_threads_organization_id_key'))
    )
    with op.batch_alter_table('team_threads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_threads_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_team_threads_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('team_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('thread_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_team_messages_organization_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['thread_id'], ['team_threads.id'],
                            name=op.f('fk_team_messages_thread_id_team_threads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_messages')),
    sa.UniqueConstraint('organization_id', 'dedupe_key', name=op.f('uq_team_messages_organization_id_dedupe_key'))
    )
    with op.batch_alter_table('team_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_messages_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_team_messages_thread_id'), ['thread_id'], unique=False)
        batch_op.create_index('ix_team_messages_status_due', ['status', 'due_at'], unique=False)


def downgrade() -> None:
    op.drop_table('team_messages')
    op.drop_table('team_threads')
    op.drop_table('integration_credentials')
