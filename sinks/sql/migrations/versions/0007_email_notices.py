"""an organization's address for notices by e-mail, and the e-mails queued to it

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("notice_email", sa.Text))
    op.create_table(
        "email_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.String(128), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("to_address", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_email_notices_due", "email_notices", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("email_notices")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("notice_email")
