"""kpi snapshots

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 18:20:25.547563

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('kpi_snapshots',
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('figure', sa.String(length=16), nullable=False),
    sa.Column('district_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_kpi_snapshots_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kpi_snapshots')),
    sa.UniqueConstraint('period', 'figure', 'district_id', name=op.f('uq_kpi_snapshots_period_figure_district_id'))
    )


def downgrade():
    op.drop_table('kpi_snapshots')
