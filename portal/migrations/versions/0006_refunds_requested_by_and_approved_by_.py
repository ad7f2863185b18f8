"""refunds: requested_by and approved_by refer to staff

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03 15:13:32.356678

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None

# The type of staff_members.id (IdMixin): BIGINT, INTEGER on SQLite.
STAFF_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.alter_column('requested_by_id', existing_type=sa.Integer(), type_=STAFF_ID,
                              existing_nullable=False)
        batch_op.alter_column('approved_by_id', existing_type=sa.Integer(), type_=STAFF_ID,
                              existing_nullable=True)
        batch_op.create_index(batch_op.f('ix_refunds_requested_by_id'), ['requested_by_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_refunds_approved_by_id_staff_members'), 'staff_members', ['approved_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_refunds_requested_by_id_staff_members'), 'staff_members', ['requested_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_refunds_requested_by_id_staff_members'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_refunds_approved_by_id_staff_members'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_refunds_requested_by_id'))
        batch_op.alter_column('approved_by_id', existing_type=STAFF_ID, type_=sa.Integer(),
                              existing_nullable=True)
        batch_op.alter_column('requested_by_id', existing_type=STAFF_ID, type_=sa.Integer(),
                              existing_nullable=False)
