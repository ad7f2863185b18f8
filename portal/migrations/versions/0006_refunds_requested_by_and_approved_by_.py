"""refunds: requested_by and approved_by refer to staff; declined

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03 15:13:32.356678

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = "0005"
branch_labels = None
depends_on = None

# The type of staff_members.id (IdMixin): BIGINT, INTEGER on SQLite.
STAFF_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
STATUSES = ('requested', 'approved', 'pending', 'succeeded', 'failed')


def _status_check(statuses):
    return "status IN (%s)" % ", ".join(f"'{s}'" for s in statuses)


def upgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        # hand-written: the staff id columns take staff_members.id's type (autogenerate
        # compares them equal on SQLite), and the status CHECK learns 'declined'
        batch_op.alter_column('requested_by_id', existing_type=sa.Integer(), type_=STAFF_ID,
                              existing_nullable=False)
        batch_op.alter_column('approved_by_id', existing_type=sa.Integer(), type_=STAFF_ID,
                              existing_nullable=True)
        batch_op.drop_constraint(op.f('ck_refunds_refund_status'), type_='check')
        batch_op.create_check_constraint('refund_status',
                                         _status_check(STATUSES + ('declined',)))
        batch_op.add_column(sa.Column('declined_by_id', STAFF_ID, nullable=True))
        batch_op.add_column(sa.Column('declined_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_refunds_requested_by_id'), ['requested_by_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_refunds_approved_by_id_staff_members'), 'staff_members', ['approved_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_refunds_requested_by_id_staff_members'), 'staff_members', ['requested_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_refunds_declined_by_id_staff_members'), 'staff_members', ['declined_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_refunds_declined_by_id_staff_members'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_refunds_requested_by_id_staff_members'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_refunds_approved_by_id_staff_members'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_refunds_requested_by_id'))
        batch_op.drop_column('declined_at')
        batch_op.drop_column('declined_by_id')
        batch_op.drop_constraint(op.f('ck_refunds_refund_status'), type_='check')
        batch_op.create_check_constraint('refund_status', _status_check(STATUSES))
        batch_op.alter_column('approved_by_id', existing_type=STAFF_ID, type_=sa.Integer(),
                              existing_nullable=True)
        batch_op.alter_column('requested_by_id', existing_type=STAFF_ID, type_=sa.Integer(),
                              existing_nullable=False)
