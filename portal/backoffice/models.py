"""Staff members, their roles and districts, and the table of what each role may do.

Flask-free: the payments and review code import ``StaffMember`` and ``Permission`` from here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import District
from portal.kernel.db import Base, IdMixin, str_enum


class StaffRole(enum.StrEnum):
    READER = "reader"          # 抄表: reads meters
    AUDITOR = "auditor"        # 核算: reviews readings and bills
    COLLECTOR = "collector"    # 收费: payment plans, refund requests
    SUPERVISOR = "supervisor"  # approvals, KPIs
    ADMIN = "admin"            # staff and districts; sees every district


class Permission(enum.StrEnum):
    VIEW_ACCOUNTS = "view_accounts"
    RECORD_READINGS = "record_readings"
    REVIEW_READINGS = "review_readings"
    REVIEW_BILLS = "review_bills"
    HANDLE_DISPUTES = "handle_disputes"
    MANAGE_PLANS = "manage_plans"
    APPROVE_PLANS = "approve_plans"
    REQUEST_REFUND = "request_refund"
    APPROVE_REFUND = "approve_refund"
    VIEW_KPIS = "view_kpis"
    VIEW_AUDIT_LOG = "view_audit_log"
    MANAGE_STAFF = "manage_staff"
    RESOLVE_DISPUTES = "resolve_disputes"  # uphold or adjust: the bill's outcome
    RECONCILE = "reconcile"


_P = Permission
ROLE_PERMISSIONS: Mapping[StaffRole, frozenset[Permission]] = {
    StaffRole.READER: frozenset({_P.VIEW_ACCOUNTS, _P.RECORD_READINGS}),
    StaffRole.AUDITOR: frozenset({_P.VIEW_ACCOUNTS, _P.REVIEW_READINGS, _P.REVIEW_BILLS,
                                  _P.HANDLE_DISPUTES, _P.RESOLVE_DISPUTES}),
    StaffRole.COLLECTOR: frozenset({_P.VIEW_ACCOUNTS, _P.MANAGE_PLANS, _P.REQUEST_REFUND,
                                    _P.HANDLE_DISPUTES, _P.RECONCILE}),
    StaffRole.SUPERVISOR: frozenset({_P.VIEW_ACCOUNTS, _P.REVIEW_READINGS, _P.REVIEW_BILLS,
                                     _P.HANDLE_DISPUTES, _P.MANAGE_PLANS, _P.APPROVE_PLANS,
                                     _P.REQUEST_REFUND, _P.APPROVE_REFUND, _P.VIEW_KPIS,
                                     _P.VIEW_AUDIT_LOG, _P.RESOLVE_DISPUTES, _P.RECONCILE}),
    StaffRole.ADMIN: frozenset(Permission),
}
# Roles that sign in with a TOTP code as well as the password.
TOTP_ROLES = frozenset({StaffRole.SUPERVISOR, StaffRole.ADMIN})
# Roles that see every district, whatever districts they are members of.
ALL_DISTRICT_ROLES = frozenset({StaffRole.ADMIN})

staff_districts = sa.Table(
    "staff_districts",
    Base.metadata,
    sa.Column("staff_id", sa.ForeignKey("staff_members.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("district_id", sa.ForeignKey("districts.id"), primary_key=True, index=True),
)


class StaffMember(IdMixin, Base):
    """A member of staff. Separate from customers: own table, own sign-in, ids ``s:<id>``."""

    __tablename__ = "staff_members"

    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(100))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "staff_role"))
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    # The last TOTP time step accepted: a code for this step or an earlier one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    is_active: Mapped[bool] = mapped_column(default=True)
    must_change_password: Mapped[bool] = mapped_column(default=True)
    password_changed_at: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(default=0)
    last_failed_login_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    email: Mapped[str | None] = mapped_column(sa.String(254))  # staff notifications, optional

    districts: Mapped[list[District]] = relationship(secondary=staff_districts,
                                                     order_by=District.code)

    # Flask-Login's user protocol, kept here without importing Flask into the domain.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"s:{self.id}"

    def can(self, permission: Permission) -> bool:
        return self.is_active and permission in ROLE_PERMISSIONS[self.role]

    @property
    def needs_totp(self) -> bool:
        return self.role in TOTP_ROLES

    @property
    def sees_all_districts(self) -> bool:
        return self.role in ALL_DISTRICT_ROLES


class KpiSnapshot(IdMixin, Base):
    """One KPI figure of one district for one period, as computed by the refresh task
    (``portal.backoffice.kpi.refresh``): the dashboard reads these instead of scanning the
    ledger. The newest only: a refresh replaces the period's rows."""

    __tablename__ = "kpi_snapshots"
    __table_args__ = (sa.UniqueConstraint("period", "figure", "district_id"),)

    period: Mapped[str] = mapped_column(sa.String(7))
    figure: Mapped[str] = mapped_column(sa.String(16))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"))
    as_of: Mapped[date]                     # the local day the figures are as of
    values: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    computed_at: Mapped[datetime]
