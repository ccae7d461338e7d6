"""claim line control numbers, payer claim control numbers, episodes in the ledger, export runs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "line_control_number", sa.String(length=30), nullable=False, server_default=""
            )
        )
        batch_op.add_column(
            sa.Column("payer_claim_control_number", sa.String(length=50), nullable=True)
        )
        batch_op.add_column(sa.Column("episode_start", sa.Date(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_export_ledger_line_control_number"),
            ["line_control_number"],
            unique=False,
        )
    op.create_table(
        "export_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("exports_dir", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_export_runs")),
    )


def downgrade() -> None:
    op.drop_table("export_runs")
    with op.batch_alter_table("export_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_ledger_line_control_number"))
        batch_op.drop_column("episode_start")
        batch_op.drop_column("payer_claim_control_number")
        batch_op.drop_column("line_control_number")
