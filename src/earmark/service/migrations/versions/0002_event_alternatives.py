"""Events keep the other classes found for the same sound (``alternatives``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``events.alternatives`` (JSON list of ``[label, mid, peak]``; empty before)."""
    op.add_column("events", sa.Column("alternatives", sa.JSON()))


def downgrade() -> None:
    """Drop ``events.alternatives``."""
    op.drop_column("events", "alternatives")
