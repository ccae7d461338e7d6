"""every care-management program: care plans, patients' QMB status, activities' performer

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("qmb", sa.Boolean(), nullable=True))
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "performer",
                sa.String(length=16),
                nullable=False,
                server_default="clinical_staff",
            )
        )
    op.create_table(
        "care_plans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("program", sa.String(length=16), nullable=False),
        sa.Column("established_on", sa.Date(), nullable=False),
        sa.Column("revised_on", sa.Date(), nullable=True),
        sa.Column("shared_with_patient_on", sa.Date(), nullable=True),
        sa.Column("version_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.patient_id"], name=op.f("fk_care_plans_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_plans")),
        sa.UniqueConstraint(
            "patient_id", "program", "version_on", name=op.f("uq_care_plans_patient_id")
        ),
    )
    with op.batch_alter_table("care_plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_care_plans_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("care_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_care_plans_patient_id"))
    op.drop_table("care_plans")
    with op.batch_alter_table("care_activities", schema=None) as batch_op:
        batch_op.drop_column("performer")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("qmb")
