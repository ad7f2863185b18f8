"""Reading the audit log (``portal.kernel.audit``) and an account's ledger in the back office.

Search by member of staff (username), account (户号), action (an exact action, or a prefix such
as ``refund.``) and a date range (local days, both ends included). Pages are keyset-paginated on
(at, id), newest first: a page is one indexed range scan however deep it is. The CSV export
streams the same search in batches.

Scoping: an entry about an account is visible to staff of that account's district; entries
without an account (staff administration, sign-in matters) only to those who see every district
(administrators). Money movements are the ledger's rows: the account's ledger is the audit
page's second tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import ElectricityAccount
from portal.backoffice.models import StaffMember
from portal.backoffice.service import account_filter, get_scoped_account
from portal.kernel.audit import AuditEntry
from portal.kernel.errors import DomainError, NotFound
from portal.ledger.models import LedgerEntry
from portal.urls import MAX_ID

PAGE_SIZE = 50
EARLIEST, LATEST = date.min + timedelta(days=1), date.max - timedelta(days=1)
CSV_BATCH = 1000


class BadCursor(DomainError):
    code = "audit_bad_cursor"


@dataclass(frozen=True)
class Filters:
    staff: str = ""       # username
    account: str = ""     # 户号
    action: str = ""      # exact, or a prefix ending in "."
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class Row:
    entry: AuditEntry
    staff: str | None
    account_no: str | None


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def encode_cursor(at: datetime, entry_id: int) -> str:
    return f"{at.isoformat()}~{entry_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, _, entry_id = cursor.partition("~")
        return datetime.fromisoformat(at), _entry_id(entry_id)
    except ValueError:
        raise BadCursor(cursor[:40]) from None


def _entry_id(text: str) -> int:
    """An id as a cursor carries it: ASCII digits (``str.isdigit`` also takes "²"), in range."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise ValueError(text[:40])
    return int(text)


def _search(session: Session, staff: StaffMember, filters: Filters,
            zone: ZoneInfo) -> sa.Select[Any]:
    stmt = (sa.select(AuditEntry, StaffMember.username, ElectricityAccount.account_no)
            .outerjoin(StaffMember, StaffMember.id == AuditEntry.staff_id)
            .outerjoin(ElectricityAccount, ElectricityAccount.id == AuditEntry.account_id))
    if not staff.sees_all_districts:
        stmt = stmt.where(AuditEntry.account_id.is_not(None), account_filter(
            session, staff, AuditEntry.account_id))  # type: ignore[arg-type]  # NULLs: above
    if filters.staff:
        stmt = stmt.where(AuditEntry.staff_id == sa.select(StaffMember.id).where(
            StaffMember.username == filters.staff.strip().lower()).scalar_subquery())
    if filters.account:
        stmt = stmt.where(AuditEntry.account_id == sa.select(ElectricityAccount.id).where(
            ElectricityAccount.account_no == filters.account.strip()).scalar_subquery())
    if filters.action:
        action = filters.action.strip()
        stmt = stmt.where(AuditEntry.action.startswith(action, autoescape=True)
                          if action.endswith(".") else AuditEntry.action == action)
    # a day at the calendar's ends (0001-01-01, 9999-12-31) bounds nothing: no bound, rather
    # than a date that cannot be written in UTC
    if filters.since and filters.since > EARLIEST:
        stmt = stmt.where(AuditEntry.at >= datetime.combine(filters.since, time(), zone))
    if filters.until and filters.until < LATEST:
        stmt = stmt.where(AuditEntry.at < datetime.combine(filters.until + timedelta(days=1),
                                                           time(), zone))
    return stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def _after(stmt: sa.Select[Any], cursor: str | None) -> sa.Select[Any]:
    if not cursor:
        return stmt
    at, entry_id = decode_cursor(cursor)
    return stmt.where(sa.or_(AuditEntry.at < at,
                             sa.and_(AuditEntry.at == at, AuditEntry.id < entry_id)))


def search(session: Session, staff: StaffMember, filters: Filters, zone: ZoneInfo,
           cursor: str | None = None, per_page: int = PAGE_SIZE) -> Page:
    """One page of entries visible to ``staff`` matching ``filters``, newest first."""
    found = session.execute(_after(_search(session, staff, filters, zone), cursor)
                            .limit(per_page + 1)).all()
    rows = [Row(entry, username, account_no) for entry, username, account_no in found]
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page(rows, encode_cursor(rows[-1].entry.at, rows[-1].entry.id) if more else None)


CSV_HEADER = ["at", "actor", "staff", "action", "object_type", "object_id", "account_no",
              "amount_fen", "details"]


def csv_rows(session: Session, staff: StaffMember, filters: Filters,
             zone: ZoneInfo) -> Iterator[list[Any]]:
    """Every matching entry as CSV cells, fetched a batch at a time (keyset, as the pages)."""
    yield CSV_HEADER
    cursor: str | None = None
    while True:
        page = search(session, staff, filters, zone, cursor, CSV_BATCH)
        for row in page.rows:
            e = row.entry
            yield [e.at.astimezone(zone).isoformat(), e.actor.value, row.staff or "", e.action,
                   e.object_type, e.object_id or "", row.account_no or "",
                   "" if e.amount_fen is None else e.amount_fen,
                   " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))]
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


@dataclass(frozen=True)
class LedgerPage:
    account: ElectricityAccount
    entries: list[LedgerEntry]
    next_cursor: str | None


def ledger(session: Session, staff: StaffMember, account_no: str, cursor: str | None = None,
           per_page: int = PAGE_SIZE) -> LedgerPage:
    """The account's ledger entries (every money movement), newest first; NotFound for an
    account outside ``staff``'s districts."""
    account_id = session.scalar(sa.select(ElectricityAccount.id)
                                .where(ElectricityAccount.account_no == account_no.strip()))
    if account_id is None:
        raise NotFound()
    account = get_scoped_account(session, staff, account_id)
    stmt = (sa.select(LedgerEntry).where(LedgerEntry.account_id == account.id)
            .order_by(LedgerEntry.id.desc()))
    if cursor:
        try:
            stmt = stmt.where(LedgerEntry.id < _entry_id(cursor))
        except ValueError:
            raise BadCursor(cursor[:40]) from None
    entries = list(session.scalars(stmt.limit(per_page + 1)))
    more = len(entries) > per_page
    entries = entries[:per_page]
    return LedgerPage(account, entries, str(entries[-1].id) if more else None)
