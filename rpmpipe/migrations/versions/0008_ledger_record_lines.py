"""the record's lines each ledger revision was compared against, and an index on the
ledger's record keys and revisions: "nothing new" is one indexed query

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        # NULL on rows written before: the export then compares those records line by line.
        batch_op.add_column(sa.Column("record_lines", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_export_ledger_record_revision",
            ["patient_id", "program", "record_kind", "period_start", "revision"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_export_ledger_record_revision")
        batch_op.drop_column("record_lines")
