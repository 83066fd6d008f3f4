"""Database access: where PostgreSQL is, its schema, and connections to it."""
