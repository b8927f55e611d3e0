"""each subscription's endpoint hash, so that a dispatcher claims only its own endpoints' deliveries

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

from sinks.sql.models import endpoint_hash

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("endpoint_hash", sa.BigInteger, nullable=False, server_default="0"))
    subscriptions = sa.table("subscriptions", sa.column("id", sa.String), sa.column("endpoint", sa.Text),
                             sa.column("endpoint_hash", sa.BigInteger))
    conn = op.get_bind()
    rows = conn.execute(sa.select(subscriptions.c.id, subscriptions.c.endpoint)).all()
    if rows:
        conn.execute(subscriptions.update().where(subscriptions.c.id == sa.bindparam("sid")).values(
            endpoint_hash=sa.bindparam("hash")), [{"sid": sid, "hash": endpoint_hash(e)} for sid, e in rows])


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("endpoint_hash")
