"""Alembic migrations of the service database (run with ``earmark db upgrade``)."""
