"""activity engagement fields (goals, PRO, note), remittances and their lines

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("goals_reviewed", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("pro_instrument", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("pro_score", sa.Numeric(precision=8, scale=2), nullable=True))
        batch_op.add_column(
            sa.Column("note_ref", sa.String(length=64), nullable=False, server_default="")
        )
    op.create_table(
        "remittances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("interchange_control", sa.String(length=9), nullable=False),
        sa.Column("trace_number", sa.String(length=50), nullable=False),
        sa.Column("payer_name", sa.String(length=60), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=True),
        sa.Column("total_paid", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("unmatched_claim_ids", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remittances")),
        sa.UniqueConstraint("file_sha256", name=op.f("uq_remittances_file_sha256")),
    )
    op.create_table(
        "remit_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("remittance_id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.String(length=38), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("claim_status", sa.String(length=2), nullable=False),
        sa.Column("payer_claim_control", sa.String(length=50), nullable=False),
        sa.Column("line_control_number", sa.String(length=50), nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("date_of_service", sa.Date(), nullable=True),
        sa.Column("charge", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("paid", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("denial_codes", sa.String(length=200), nullable=False),
        sa.Column("adjustments_json", sa.Text(), nullable=False),
        sa.Column("remark_codes", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["ledger_id"], ["export_ledger.id"], name=op.f("fk_remit_lines_ledger_id_export_ledger")
        ),
        sa.ForeignKeyConstraint(
            ["remittance_id"],
            ["remittances.id"],
            name=op.f("fk_remit_lines_remittance_id_remittances"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remit_lines")),
        sa.UniqueConstraint(
            "remittance_id", "claim_id", "seq", name=op.f("uq_remit_lines_remittance_id")
        ),
    )
    with op.batch_alter_table("remit_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_remit_lines_claim_id"), ["claim_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_remit_lines_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_remit_lines_remittance_id"), ["remittance_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("remit_lines")
    op.drop_table("remittances")
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.drop_column("note_ref")
        batch_op.drop_column("pro_score")
        batch_op.drop_column("pro_instrument")
        batch_op.drop_column("goals_reviewed")
