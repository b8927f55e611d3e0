"""attribution: current, history, disputes and their audit trail, published list versions

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attribution_current",
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("organization_id", sa.String(128), index=True),
        sa.Column("npi", sa.String(10)),
        sa.Column("method_id", sa.String(64)),
        sa.Column("method_version", sa.String(32)),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("effective_date", sa.String(10), nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("changed_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "attribution_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.String(128), nullable=False, index=True),
        sa.Column("organization_id", sa.String(128), nullable=False),
        sa.Column("npi", sa.String(10)),
        sa.Column("method_id", sa.String(64)),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("start_date", sa.String(10), nullable=False),
        sa.Column("end_date", sa.String(10)),
    )
    op.create_table(
        "disputes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), nullable=False, index=True),
        sa.Column("organization_id", sa.String(128), nullable=False, index=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("npi", sa.String(10)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("effective_from", sa.String(10)),
        sa.Column("expires_on", sa.String(10)),
        sa.Column("decided_at", sa.String(40)),
    )
    op.create_table(
        "dispute_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dispute_id", sa.String(64), sa.ForeignKey("disputes.id"), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "attribution_list_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.String(128), nullable=False, index=True),
        sa.Column("published_at", sa.String(40), nullable=False),
        sa.Column("members", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("attribution_list_versions", "dispute_events", "disputes", "attribution_history",
                  "attribution_current"):
        op.drop_table(table)
