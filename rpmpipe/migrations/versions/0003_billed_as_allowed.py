"""records and ledger: management minutes, ordering NPI, episode start; activity voids

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engagement_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "management_minutes",
                sa.Numeric(precision=8, scale=2),
                nullable=False,
                server_default="0",
            )
        )
        batch_op.add_column(
            sa.Column("ordering_npi", sa.String(length=10), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("episode_start", sa.Date(), nullable=True))
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "management_minutes",
                sa.Numeric(precision=8, scale=2),
                nullable=False,
                server_default="0",
            )
        )
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("voided_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("voided_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.drop_column("management_minutes")
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.drop_column("voided_reason")
        batch_op.drop_column("voided_by")
        batch_op.drop_column("voided_at")
    with op.batch_alter_table("engagement_records", schema=None) as batch_op:
        batch_op.drop_column("episode_start")
        batch_op.drop_column("ordering_npi")
        batch_op.drop_column("management_minutes")
