"""providers: the directory, for reports (names, and specialty as the peer group of scorecards);
member_cohorts: the cohorts each member is in, for alerts

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("npi", sa.String(10), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("taxonomy", sa.String(16)),
        sa.Column("organization_id", sa.String(128)),
    )
    op.create_table(
        "member_cohorts",
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("cohorts", sa.Text, nullable=False),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("changed_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("member_cohorts")
    op.drop_table("providers")
