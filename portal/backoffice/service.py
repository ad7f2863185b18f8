"""Staff: creation and administration, sign-in (password, then TOTP for supervisors and admins),
and district scoping of every query staff pages make.

Scoping lives here, in the query layer: a view never filters by district itself, it asks for a
scoped ``Select`` (``scoped_accounts``, ``scoped_bills``, ``scoped_readings``), a scoped row
(``get_scoped_account``, ``get_scoped_bill``: NotFound, not "forbidden", for another district's
row), or a clause for its own table (``account_filter`` for any ``account_id`` column).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session

from portal.accounts.models import District, ElectricityAccount, Meter
from portal.accounts.service import hash_password, password_matches, rehashed_if_outdated
from portal.backoffice.models import ALL_DISTRICT_ROLES, StaffMember, StaffRole, staff_districts
from portal.bills.models import Bill
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict, DomainError, NotFound
from portal.readings.models import Reading

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD = 10
MAX_PASSWORD = 128
TOTP_ISSUER = "Dianfei 电费"
MAX_PAGE = 10**9
TOTP_DRIFT_STEPS = 1  # a code of the previous or next 30 s step is accepted (phone clocks drift)


class UsernameTaken(Conflict):
    code = "staff_username_taken"


class BadUsername(DomainError):
    code = "staff_bad_username"


class UnknownDistrict(DomainError):
    code = "staff_unknown_district"


class DistrictsRequired(DomainError):
    code = "staff_districts_required"


class WeakPassword(DomainError):
    code = "staff_weak_password"


class WrongPassword(DomainError):
    code = "staff_wrong_password"


class SamePassword(DomainError):
    code = "staff_same_password"


class LastAdmin(Conflict):
    code = "staff_last_admin"


# --- administration ---------------------------------------------------------------------------

def normalise_username(raw: str) -> str:
    return raw.strip().lower()


def check_password_policy(password: str, username: str) -> None:
    """At least 10 characters, at most 128, and not the username."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD or \
            normalise_username(password) == normalise_username(username):
        raise WeakPassword()


def district_ids_for_codes(session: Session, codes: Collection[str]) -> list[int]:
    """District ids for codes; UnknownDistrict names the first code that does not exist."""
    rows = session.execute(sa.select(District.code, District.id)
                           .where(District.code.in_(list(codes)))).tuples()
    found = {code: district_id for code, district_id in rows}
    for code in codes:
        if code not in found:
            raise UnknownDistrict(code)
    return [found[code] for code in codes]


def all_districts(session: Session) -> list[District]:
    return list(session.scalars(sa.select(District).order_by(District.code)))


def _districts(session: Session, role: StaffRole, district_ids: Collection[int]) -> list[District]:
    districts = list(session.scalars(sa.select(District)
                                     .where(District.id.in_(list(district_ids)))))
    if len(districts) != len(set(district_ids)):
        raise UnknownDistrict()
    if not districts and role not in ALL_DISTRICT_ROLES:
        raise DistrictsRequired()
    return districts


def create_staff(session: Session, clock: Clock, *, username: str, display_name: str,
                 password: str, role: StaffRole, district_ids: Collection[int] = (),
                 must_change_password: bool = True) -> StaffMember:
    """A new member of staff, who changes the password at first sign-in (unless told not to,
    as the demo does). Non-admins belong to at least one district."""
    username = normalise_username(username)
    if not USERNAME_RE.fullmatch(username):
        raise BadUsername(username)
    check_password_policy(password, username)
    districts = _districts(session, role, district_ids)
    if session.scalar(sa.select(StaffMember.id).where(StaffMember.username == username)):
        raise UsernameTaken(username)
    staff = StaffMember(username=username, display_name=display_name.strip() or username,
                        password_hash=hash_password(password), role=role, districts=districts,
                        must_change_password=must_change_password, created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(staff)
    except IntegrityError as exc:  # a concurrent create with the same username won
        raise UsernameTaken(username) from exc
    return staff


def list_staff(session: Session) -> list[StaffMember]:
    return list(session.scalars(sa.select(StaffMember)
                                .order_by(StaffMember.is_active.desc(), StaffMember.username)))


def get_staff(session: Session, staff_id: int) -> StaffMember:
    staff = session.get(StaffMember, staff_id)
    if staff is None:
        raise NotFound()
    return staff


def _active_admins(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(StaffMember).where(
        StaffMember.role == StaffRole.ADMIN, StaffMember.is_active.is_(True))) or 0


def _keep_an_admin(session: Session, staff: StaffMember) -> None:
    if staff.role is StaffRole.ADMIN and staff.is_active and _active_admins(session) <= 1:
        raise LastAdmin()


def update_staff(session: Session, staff: StaffMember, *, display_name: str, role: StaffRole,
                 district_ids: Collection[int]) -> None:
    """Change name, role and districts. A new supervisor or admin enrols TOTP at next sign-in;
    the last active admin cannot be demoted."""
    if role is not StaffRole.ADMIN:
        _keep_an_admin(session, staff)
    staff.districts = _districts(session, role, district_ids)
    staff.display_name = display_name.strip() or staff.username
    staff.role = role


def reset_password(session: Session, clock: Clock, staff: StaffMember, password: str) -> None:
    """An administrator's reset: the member must choose a new password at next sign-in."""
    check_password_policy(password, staff.username)
    staff.password_hash = hash_password(password)
    staff.must_change_password = True
    staff.failed_logins = 0


def reset_totp(session: Session, staff: StaffMember) -> None:
    """Forget the authenticator (a lost phone): the member enrols again at next sign-in."""
    staff.totp_secret = None
    staff.totp_last_step = None


def deactivate(session: Session, staff: StaffMember) -> None:
    """Deactivated staff cannot sign in and their open sessions end at the next request."""
    _keep_an_admin(session, staff)
    staff.is_active = False


def change_password(session: Session, clock: Clock, staff: StaffMember, current: str,
                    new: str) -> None:
    if not password_matches(staff.password_hash, current):
        raise WrongPassword()
    check_password_policy(new, staff.username)
    if password_matches(staff.password_hash, new):
        raise SamePassword()
    staff.password_hash = hash_password(new)
    staff.must_change_password = False
    staff.password_changed_at = clock.now()


# --- sign-in -----------------------------------------------------------------------------------

def authenticate(session: Session, clock: Clock, username: str, password: str
                 ) -> StaffMember | None:
    """The active member with this username and password, or None. Failures are counted on the
    member (shown to administrators); the rate limiter is what slows guessing down."""
    staff = session.scalar(sa.select(StaffMember).where(
        StaffMember.username == normalise_username(username)))
    matches = password_matches(staff.password_hash if staff else None, password)
    if staff is None:
        return None
    if not matches or not staff.is_active:
        record_failed_sign_in(staff, clock.now())
        return None
    staff.password_hash = rehashed_if_outdated(staff.password_hash, password)
    return staff


def record_failed_sign_in(staff: StaffMember, now: datetime) -> None:
    """A wrong password or TOTP code: counted, and shown to administrators."""
    staff.failed_logins += 1
    staff.last_failed_login_at = now


def record_sign_in(staff: StaffMember, now: datetime) -> None:
    """The password (and TOTP, where needed) was right: the member is signed in."""
    staff.failed_logins = 0
    staff.last_login_at = now


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(staff: StaffMember, secret: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=staff.username, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(session: Session, staff: StaffMember, step: int, **values: Any) -> bool:
    """Record ``step`` as used, only if no later or equal step was used: a code is accepted
    once, even when two requests race with it."""
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(StaffMember)
        .where(StaffMember.id == staff.id,
               sa.or_(StaffMember.totp_last_step.is_(None), StaffMember.totp_last_step < step))
        .values(totp_last_step=step, **values)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def verify_totp(session: Session, clock: Clock, staff: StaffMember, code: str) -> bool:
    """The enrolled authenticator's code for now (one step of drift allowed), never replayed."""
    if staff.totp_secret is None:
        return False
    step = _matching_step(staff.totp_secret, code, clock.now())
    return step is not None and _claim_step(session, staff, step)


def enrol_totp(session: Session, clock: Clock, staff: StaffMember, secret: str,
               code: str) -> bool:
    """Store ``secret`` when ``code`` proves the authenticator app holds it."""
    step = _matching_step(secret, code, clock.now())
    return step is not None and _claim_step(session, staff, step, totp_secret=secret)


# --- district scoping --------------------------------------------------------------------------

def visible_district_ids(session: Session, staff: StaffMember) -> set[int] | None:
    """The districts whose accounts ``staff`` may see; None means every district (admins)."""
    if staff.sees_all_districts:
        return None
    return set(session.scalars(sa.select(staff_districts.c.district_id)
                               .where(staff_districts.c.staff_id == staff.id)))


def district_filter(session: Session, staff: StaffMember,
                    district_column: QueryableAttribute[int]) -> sa.ColumnElement[bool]:
    """A WHERE clause keeping rows of ``staff``'s districts (TRUE for admins)."""
    ids = visible_district_ids(session, staff)
    return sa.true() if ids is None else district_column.in_(sorted(ids))


def account_filter(session: Session, staff: StaffMember,
                   account_id_column: QueryableAttribute[int]) -> sa.ColumnElement[bool]:
    """A WHERE clause keeping rows whose ``account_id`` is an account in ``staff``'s districts;
    for any table that refers to an account (bills, payments, refunds, disputes, plans)."""
    ids = visible_district_ids(session, staff)
    if ids is None:
        return sa.true()
    in_districts = sa.select(ElectricityAccount.id).where(
        ElectricityAccount.district_id.in_(sorted(ids)))
    return account_id_column.in_(in_districts)


def scoped_accounts(session: Session, staff: StaffMember) -> sa.Select[tuple[ElectricityAccount]]:
    return sa.select(ElectricityAccount).where(
        district_filter(session, staff, ElectricityAccount.district_id))


def scoped_bills(session: Session, staff: StaffMember) -> sa.Select[tuple[Bill]]:
    return sa.select(Bill).where(account_filter(session, staff, Bill.account_id))


def scoped_readings(session: Session, staff: StaffMember) -> sa.Select[tuple[Reading]]:
    return sa.select(Reading).join(Meter, Meter.id == Reading.meter_id).where(
        account_filter(session, staff, Meter.account_id))


def get_scoped_account(session: Session, staff: StaffMember,
                       account_id: int) -> ElectricityAccount:
    """The account if it is in ``staff``'s districts; otherwise NotFound, as if absent."""
    account = session.scalar(scoped_accounts(session, staff)
                             .where(ElectricityAccount.id == account_id))
    if account is None:
        raise NotFound()
    return account


def get_scoped_bill(session: Session, staff: StaffMember, bill_id: int) -> Bill:
    bill = session.scalar(scoped_bills(session, staff).where(Bill.id == bill_id))
    if bill is None:
        raise NotFound()
    return bill


@dataclass(frozen=True)
class Page:
    items: Sequence[ElectricityAccount]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search_accounts(session: Session, staff: StaffMember, query: str = "", page: int = 1,
                    per_page: int = 20) -> Page:
    """Accounts in scope whose 户号 starts with, or holder name contains, ``query``. A page
    past the last is empty (its number is capped: an OFFSET beyond bigint is a database
    error)."""
    page = min(max(1, page), MAX_PAGE)
    stmt = scoped_accounts(session, staff)
    query = query.strip()
    if query:
        stmt = stmt.where(sa.or_(
            ElectricityAccount.account_no.startswith(query, autoescape=True),
            ElectricityAccount.holder_name.contains(query, autoescape=True)))
    total = session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0
    items = list(session.scalars(stmt.order_by(ElectricityAccount.account_no)
                                 .limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, total=total, page=page, per_page=per_page)
