"""care gaps: each member's gaps in their latest status, as gap alerts report them; the alert
types a subscription receives

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "care_gaps",
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("gap_id", sa.Text, primary_key=True),  # measure|facility|visit: facility ids run long
        sa.Column("measure_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due", sa.String(10), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
    )
    op.create_index("ix_care_gaps_member_status", "care_gaps", ["member_id", "status"])
    # Endpoints registered before now keep receiving what they received (ADT alerts), not gap.* too.
    op.add_column("subscriptions", sa.Column("event_types", sa.Text, nullable=False, server_default="adt.*"))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("event_types")
    op.drop_index("ix_care_gaps_member_status", "care_gaps")
    op.drop_table("care_gaps")
