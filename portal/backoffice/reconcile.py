"""What a member of staff sees of reconciliation (the query layer of the worklist).

A difference tied to one of our orders carries that order's account and is seen by staff of
the account's district (admins: all). A difference without an account (the channel has money
for an order number we never issued, or a refund we do not know) belongs to no district: only
supervisors and admins see those, as they can act across districts (refund by hand, chase the
channel). Another district's difference answers 404, as if it did not exist.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from payments.reconcile.models import Difference, DifferenceNote, DifferenceStatus, Statement
from portal.backoffice.models import StaffMember, StaffRole
from portal.backoffice.service import account_filter
from portal.kernel.errors import NotFound

UNOWNED_ROLES = frozenset({StaffRole.SUPERVISOR, StaffRole.ADMIN})
WORKLIST = (DifferenceStatus.OPEN, DifferenceStatus.RECHECK)


def scope(session: Session, staff: StaffMember) -> sa.ColumnElement[bool]:
    owned = sa.and_(Difference.account_id.is_not(None),
                    account_filter(session, staff, Difference.account_id))
    if staff.role in UNOWNED_ROLES:
        return sa.or_(owned, Difference.account_id.is_(None))
    return owned


def worklist(session: Session, staff: StaffMember, limit: int = 200) -> list[Difference]:
    """Open differences (and those waiting for the next day's statement), oldest day first."""
    return list(session.scalars(sa.select(Difference).where(
        scope(session, staff), Difference.status.in_(WORKLIST))
        .order_by(Difference.bill_date, Difference.channel, Difference.id).limit(limit)))


def settled(session: Session, staff: StaffMember, limit: int = 20) -> list[Difference]:
    return list(session.scalars(sa.select(Difference).where(
        scope(session, staff), Difference.status.in_(
            (DifferenceStatus.RESOLVED, DifferenceStatus.AUTO_RESOLVED)))
        .order_by(Difference.resolved_at.desc(), Difference.id.desc()).limit(limit)))


def recent_statements(session: Session, staff: StaffMember, limit: int = 14) -> list[Statement]:
    """The last statements fetched (channel, day, version, counts and totals of every
    district): for supervisors and admins only."""
    if staff.role not in UNOWNED_ROLES:
        return []
    return list(session.scalars(sa.select(Statement).order_by(
        Statement.bill_date.desc(), Statement.channel, Statement.version.desc()).limit(limit)))


def get_scoped(session: Session, staff: StaffMember, difference_id: int) -> Difference:
    diff = session.scalar(sa.select(Difference).where(
        Difference.id == difference_id, scope(session, staff)))
    if diff is None:
        raise NotFound()
    return diff


def notes(session: Session, diff: Difference) -> list[tuple[DifferenceNote, str]]:
    """The difference's notes, oldest first, with who wrote each."""
    return [(note, name) for note, name in session.execute(
        sa.select(DifferenceNote, StaffMember.display_name)
        .join(StaffMember, StaffMember.id == DifferenceNote.staff_id)
        .where(DifferenceNote.difference_id == diff.id).order_by(DifferenceNote.id)).tuples()]
