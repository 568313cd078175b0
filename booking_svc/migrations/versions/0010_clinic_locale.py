"""the clinic's locale (issue 22, language and time): a BCP 47 tag ("de-DE") the booking events carry as
``clinic_locale``, the notifications' language for an owner without one of their own.  Expand only: the
column is added with a constant default ("" = unknown), metadata-only on PostgreSQL 11+ (no rewrite);
the previous release neither reads nor writes it.

Revision ID: 0010_clinic_locale
Revises: 0009_pay_at_clinic
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_clinic_locale"
down_revision = "0009_pay_at_clinic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clinics", sa.Column("locale", sa.String(35), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("clinics", "locale")
