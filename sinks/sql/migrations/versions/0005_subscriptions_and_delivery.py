"""organizations and API tokens, subscription settings (format, filters, scope, heartbeats,
secret rotation, status), numbered deliveries not tied to an alert, withheld deliveries, consents
and the audit log

Revision ID: 0005
Revises: 0004
"""
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("plan_level", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(128), sa.ForeignKey("organizations.id"), nullable=False, index=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False, index=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.String(128), nullable=False, index=True),
        sa.Column("organization_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(256), nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("endpoint", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("previous_secret", sa.Text))
        batch.add_column(sa.Column("previous_secret_expires_at", sa.Float))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("disabled_reason", sa.Text))
        batch.add_column(sa.Column("filters", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("payload_format", sa.String(16), nullable=False, server_default="json-full"))
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="attributed"))
        batch.add_column(sa.Column("heartbeat_period_s", sa.Float))
        batch.add_column(sa.Column("events_since_start", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_sent_at", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("failing_since", sa.Float))
    subscriptions = sa.table("subscriptions", sa.column("id"), sa.column("url"), sa.column("active"),
                             sa.column("endpoint"), sa.column("status"))
    conn = op.get_bind()
    for sub_id, url, active in conn.execute(sa.select(subscriptions.c.id, subscriptions.c.url,
                                                      subscriptions.c.active)).all():
        conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id).values(
            endpoint=_origin(url), status="active" if active else "paused"))
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("active")
        batch.create_index("ix_subscriptions_endpoint", ["endpoint"])

    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("member_id", sa.String(128)))
        batch.add_column(sa.Column("event_number", sa.Integer))
        batch.add_column(sa.Column("content_type", sa.String(64), nullable=False,
                                   server_default="application/json"))
        batch.add_column(sa.Column("created_at", sa.Float, nullable=False, server_default="0"))
        batch.alter_column("alert_id", existing_type=sa.String(64), nullable=True)
    op.execute("UPDATE deliveries SET created_at = received_at_ms / 1000.0, "
               "organization_id = (SELECT organization_id FROM subscriptions "
               "WHERE subscriptions.id = deliveries.subscription_id), "
               "member_id = (SELECT member_id FROM alerts WHERE alerts.alert_id = deliveries.alert_id), "
               "status = CASE status WHEN 'failed' THEN 'exhausted' ELSE status END")
    op.create_index("ix_deliveries_member_id", "deliveries", ["member_id"])
    op.create_index("ix_deliveries_subscription_number", "deliveries", ["subscription_id", "event_number"])
    op.create_table(
        "withheld_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), sa.ForeignKey("alerts.alert_id"), nullable=False),
        sa.Column("subscription_id", sa.String(64), sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("organization_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False, index=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("alert_id", "subscription_id"),
    )


def downgrade() -> None:
    raise NotImplementedError("0005 is not reversible: subscriptions and deliveries changed shape")
