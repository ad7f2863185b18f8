"""Customers: sign-up, sign-in, linking electricity accounts, and ownership checks."""

from __future__ import annotations

import re
import unicodedata

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import AccountLink, Customer, ElectricityAccount, Meter
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict, DomainError, NotFound

_hasher = PasswordHasher()
# Verified against when the phone is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("dianfei-timing-equaliser")
PHONE_RE = re.compile(r"1[3-9][0-9]{9}")
# Failed link attempts are limited per customer (DIANFEI_LINK_RATE_LIMIT) with one counter
# shared by the website and the mini-program API (a Flask-Limiter shared scope).
LINK_LIMIT_SCOPE = "account-link"


class PhoneTaken(Conflict):
    code = "phone_taken"


class LinkMismatch(DomainError):
    code = "link_mismatch"


class AlreadyLinked(Conflict):
    code = "already_linked"


def normalise_phone(raw: str) -> str:
    """Mainland mobile numbers as 11 digits: spaces, dashes and a +86 / 0086 prefix removed."""
    digits = re.sub(r"[\s-]", "", raw)
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix):]
    return digits


def normalise_name(raw: str) -> str:
    """Holder names compare after NFKC (full-width to half-width) and with spaces removed."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw))


def hash_password(password: str) -> str:
    """Argon2id with one configuration for everyone who signs in (customers and staff)."""
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; without a hash (unknown user) a dummy hash is checked, so
    a miss costs as long as a hit."""
    try:
        _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def rehashed_if_outdated(password_hash: str, password: str) -> str:
    """The hash again with today's parameters when they changed since it was made."""
    return _hasher.hash(password) if _hasher.check_needs_rehash(password_hash) else password_hash


def register(session: Session, clock: Clock, phone: str, password: str) -> Customer:
    phone = normalise_phone(phone)
    if session.scalar(sa.select(Customer.id).where(Customer.phone == phone)) is not None:
        raise PhoneTaken(phone)
    customer = Customer(phone=phone, password_hash=hash_password(password),
                        created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(customer)
    except IntegrityError as exc:  # a concurrent sign-up with the same phone won the race
        raise PhoneTaken(phone) from exc
    return customer


def authenticate(session: Session, clock: Clock, phone: str, password: str) -> Customer | None:
    customer = session.scalar(sa.select(Customer).where(
        Customer.phone == normalise_phone(phone), Customer.is_active.is_(True)))
    matches = password_matches(customer.password_hash if customer else None, password)
    if customer is None or not matches:
        return None
    customer.password_hash = rehashed_if_outdated(customer.password_hash, password)
    customer.last_login_at = clock.now()
    return customer


def link_account(session: Session, clock: Clock, customer: Customer, account_no: str,
                 holder_name: str, meter_last4: str) -> AccountLink:
    """Link an account when number, holder name and the last 4 meter digits all match.

    Which of the three was wrong is not said, so the form cannot be used to probe accounts.
    """
    account = session.scalar(sa.select(ElectricityAccount)
                             .where(ElectricityAccount.account_no == account_no.strip()))
    if account is None or normalise_name(account.holder_name) != normalise_name(holder_name):
        raise LinkMismatch()
    meter_match = session.scalar(
        sa.select(Meter.id).where(Meter.account_id == account.id, Meter.removed_on.is_(None),
                                  Meter.meter_no.endswith(meter_last4.strip(), autoescape=True))
    )
    if meter_match is None:
        raise LinkMismatch()
    if session.scalar(sa.select(AccountLink.id).where(AccountLink.customer_id == customer.id,
                                                      AccountLink.account_id == account.id)):
        raise AlreadyLinked(account.account_no)
    link = AccountLink(customer_id=customer.id, account_id=account.id, created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(link)
    except IntegrityError as exc:
        raise AlreadyLinked(account.account_no) from exc
    return link


def linked_accounts(session: Session, customer_id: int) -> list[ElectricityAccount]:
    return list(session.scalars(
        sa.select(ElectricityAccount)
        .join(AccountLink, AccountLink.account_id == ElectricityAccount.id)
        .where(AccountLink.customer_id == customer_id)
        .order_by(AccountLink.created_at, AccountLink.id)
    ))


def owned_account(session: Session, customer_id: int, account_id: int) -> ElectricityAccount:
    """The account if this customer has linked it; otherwise NotFound, as if it did not exist."""
    account = session.scalar(
        sa.select(ElectricityAccount)
        .join(AccountLink, AccountLink.account_id == ElectricityAccount.id)
        .where(AccountLink.customer_id == customer_id, ElectricityAccount.id == account_id)
    )
    if account is None:
        raise NotFound()
    return account


def is_linked(session: Session, customer_id: int, account_id: int) -> bool:
    return session.scalar(sa.select(AccountLink.id).where(
        AccountLink.customer_id == customer_id, AccountLink.account_id == account_id)) is not None
