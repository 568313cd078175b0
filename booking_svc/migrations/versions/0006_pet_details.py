"""pet details: weight, notes, archive and a version for etags (UpdatePet, ArchivePet)

Revision ID: 0006_pet_details
Revises: 0005_owner_locale
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_pet_details"
down_revision = "0005_owner_locale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every column nullable or with a constant default: no rewrite, the running code ignores them
    op.add_column("pets", sa.Column("weight_grams", sa.Integer()))
    op.add_column("pets", sa.Column("notes", sa.Text(), nullable=False, server_default=""))
    op.add_column("pets", sa.Column("archived_at", sa.DateTime(timezone=True)))
    op.add_column("pets", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    for column in ("version", "archived_at", "notes", "weight_grams"):
        op.drop_column("pets", column)
