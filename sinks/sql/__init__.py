"""SQL persistence with SQLAlchemy: SQLite by default, PostgreSQL through DATABASE_URL."""
