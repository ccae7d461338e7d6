"""an index on the ledger's claim ids: an appeal packet and an 835's import find a claim's
lines without reading the whole ledger

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_export_ledger_claim_id", ["claim_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_export_ledger_claim_id")
