"""an index for claiming each subscription's due deliveries without scanning everyone else's

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_subscription_due", "deliveries",
                    ["subscription_id", "status", "next_attempt_at", "event_number"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscription_due", "deliveries")
