"""Alembic environment: gapstream always hands in a connection (see sinks/sql/migrate.py)."""
from alembic import context

from sinks.sql.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
