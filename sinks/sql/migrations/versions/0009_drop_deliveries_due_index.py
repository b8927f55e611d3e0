"""drop the index of deliveries by status and due time: every claim and result rewrote it, and no
query needs it since claims read each subscription's queue (0006)

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_due", "deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
