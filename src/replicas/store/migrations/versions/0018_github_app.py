"""github app: a GitHub integration's App private key (encrypted), beside its token

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 03:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('integration_credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('private_key_encrypted', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('integration_credentials', schema=None) as batch_op:
        batch_op.drop_column('private_key_encrypted')
